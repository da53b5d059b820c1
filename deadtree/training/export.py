"""Export a trained checkpoint to ONNX with the metadata the pipeline configures itself from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from deadtree.runtime.metadata import ModelInfo, attach_info

PARITY_TOLERANCE = 1e-4


class WithSigmoid(nn.Module):
    """The exported graph returns probabilities, so no consumer can forget the sigmoid."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def export_onnx(module: nn.Module, info: ModelInfo, path: Path, in_bands: int, tile: int,
                dynamic_size: bool = True, opset: int = 17) -> float:
    """Write `module` to `path` (atomically) with `info` attached; return the max abs difference to torch."""
    import onnx

    from deadtree.training.half_weights import (exact_in_half, needs_half_storage, round_weights_to_half,
                                                store_weights_half)

    module = module.eval().float()
    half = needs_half_storage(module)
    if half:
        round_weights_to_half(module)  # the module checked for parity is then the one that ships
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    example = torch.rand(2, in_bands, tile, tile)
    axes = {0: "batch"}
    if dynamic_size:
        axes.update({2: "rows", 3: "cols"})
    torch.onnx.export(
        module, (example,), str(tmp), input_names=["image"], output_names=["output"],
        dynamic_axes={"image": axes, "output": axes}, opset_version=opset, dynamo=False,
    )
    model = onnx.load(str(tmp))
    if half or exact_in_half(model):
        store_weights_half(model)
    attach_info(model, info)
    model.producer_name = "deadtree"
    onnx.save(model, str(tmp))
    difference = parity(module, tmp, in_bands, tile)
    if difference > PARITY_TOLERANCE:
        tmp.unlink()
        raise RuntimeError(f"ONNX output differs from torch by {difference:.2e} (> {PARITY_TOLERANCE})")
    tmp.replace(path)
    return difference


def parity(module: nn.Module, onnx_path: Path, in_bands: int, tile: int, seed: int = 0) -> float:
    """Max abs difference between torch and ONNX Runtime on random input."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    x = rng.random((2, in_bands, tile, tile), dtype=np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.max(np.abs(expected - got)))


def export_segmenter_checkpoint(checkpoint: Path, path: Path, name: str, version: str, tile: int = 256,
                                overlap: int = 64, gsd_m: float = 0.6, default: bool = False,
                                description: str = "") -> tuple[ModelInfo, float]:
    from deadtree.nets.segmenter import load_segmenter

    net, ckpt = load_segmenter(checkpoint)
    config = ckpt["config"]
    best = ckpt["state"].get("best") or {}
    scaling = ckpt.get("scaling", {"method": "percentile", "low_pct": 1.0, "high_pct": 99.0})
    info = ModelInfo(
        name=name, version=version, task="segmenter", bands=tuple(config["bands"]), gsd_m=gsd_m,
        tile_size=tile, overlap=overlap, threshold=float(best.get("threshold", 0.5)),
        min_peak=float(best.get("min_peak", 0.0)), scaling=scaling,
        input_range=(0.0, 1.0), description=description,
        extra={"architecture": config["arch"], "default": default, "validation": best,
               "trained_steps": ckpt["state"]["step"],
               "validation_groups": (ckpt.get("split") or {}).get("validation_groups", []),
               "training_groups": (ckpt.get("split") or {}).get("training_groups", [])},
    )
    difference = export_onnx(WithSigmoid(net), info, path, len(config["bands"]), tile)
    return info, difference


def export_segmenter_with_card(checkpoint: Path, out_dir: Path, name: str, version: str, tile: int, overlap: int,
                               default: bool, description: str, command: str) -> tuple[Path, float]:
    """`deadtree export`: the ONNX file and its model card beside it."""
    import json

    from deadtree.training.model_card import write_segmenter_card

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    info, difference = export_segmenter_checkpoint(checkpoint, onnx_path, name, version, tile, overlap,
                                                   default=default, description=description)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    split = ckpt.get("split") or json.loads((Path(checkpoint).parent / "split.json").read_text())
    write_segmenter_card(onnx_path.with_suffix(".md"), info, ckpt, split, command, difference,
                         onnx_path.stat().st_size)
    return onnx_path, difference

