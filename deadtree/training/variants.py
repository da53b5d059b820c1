"""Faster variants of a shipped segmenter: fp16 for GPUs, statically quantized int8 for CPUs.

A variant is a model of its own (name-fp16, name-int8) with the parent's metadata, so `--model` selects it
and the registry lists it. The int8 variant is calibrated on training frames only and checked against the
fp32 parent on the validation frames before it is written.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from deadtree.metrics import PixelCounts, Scores
from deadtree.runtime.metadata import ModelInfo, attach_info, read_model_info
from deadtree.training.frames import Frame, frame_input
from deadtree.training.half_weights import expand_half_weights


def variant_info(parent: ModelInfo, precision: str, checks: dict) -> ModelInfo:
    extra = {k: v for k, v in parent.extra.items() if k != "default"}
    extra.update(variant_of=parent.name, precision=precision, checks=checks, default=False)
    return ModelInfo(**{**parent.__dict__, "name": f"{parent.name}-{precision}", "extra": extra})


def fp16_model(src: Path) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = expand_half_weights(onnx.load(str(src)))
    # inputs and outputs stay float32, so callers need not know which variant they run; the first
    # convolution stays float32 as in the int8 variant (in half precision the 0.2.0 RGB model's probabilities
    # moved by up to 0.012, over the 0.01 allowed; with it in float32, 0.0065)
    return convert_float_to_float16(model, keep_io_types=True, node_block_list=first_convolutions(model.graph))


def first_convolutions(graph: onnx.GraphProto) -> list[str]:
    """Names of the convolutions that read the network's input image."""
    inputs = {i.name for i in graph.input}
    return [n.name for n in graph.node if n.op_type == "Conv" and inputs.intersection(n.input)]


class _TileReader:
    """Calibration batches for ONNX Runtime's static quantizer: stretched crops of training frames."""

    def __init__(self, input_name: str, frames: list[Frame], tile: int, count: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        tiles = []
        for k in range(count):
            frame = frames[k % len(frames)]
            x = frame_input(frame)[0]
            r = int(rng.integers(0, max(1, x.shape[1] - tile)))
            c = int(rng.integers(0, max(1, x.shape[2] - tile)))
            tiles.append(x[:, r:r + tile, c:c + tile][None])
        self.batches = iter([{input_name: t.astype(np.float32)} for t in tiles])

    def get_next(self):
        return next(self.batches, None)


def int8_model(src: Path, calibration: list[Frame], tile: int, count: int = 48) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        expanded = Path(tmp) / "float.onnx"  # the quantizer finds weights among initializers only
        onnx.save(expand_half_weights(onnx.load(str(src))), str(expanded))
        quant_pre_process(str(expanded), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        input_name = graph.input[0].name
        # The first convolution stays in float: quantizing the stretched input image to 256 levels moved the
        # 0.2.0 RGB+NIR masks to IoU 0.979 against fp32; with its input kept exact, 0.987. It costs about 15%
        # of the int8 model's speed (4.7 against 5.6 tile-MP/s on 1024 px tiles, this project's 2-core CPU).
        first = first_convolutions(graph)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(out), _TileReader(input_name, calibration, tile, count),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.999}, nodes_to_exclude=first,
        )
        return onnx.load(str(out))


def onnx_probabilities(path_or_bytes, frames: list[Frame], flips: bool = False,
                       scales: tuple[float, ...] = (), quantized: bool = False) -> list[np.ndarray]:
    """Each frame predicted whole on the CPU, as the validation scores are; with `segment`'s --flips and
    --scales averages where asked. quantized: optimise the graph as `segment` does an int8 model."""
    import onnxruntime as ort

    from deadtree.runtime.session import graph_optimization, open_session
    from deadtree.tta import augmented

    session = open_session(ort, path_or_bytes, ort.SessionOptions(), ["CPUExecutionProvider"],
                           graph_optimization(ort, quantized, on_cpu=True))
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    out = []
    for f in frames:
        rows, cols = f.mask.shape
        out.append(augmented(run, frame_input(f), flips, scales)[0, 0, :rows, :cols])
    return out


def compare_on_frames(parent: Path, variant: onnx.ModelProto, frames: list[Frame], threshold: float,
                      precision: str) -> dict:
    """Mask agreement with the parent, and both models' validation scores at the parent's threshold; the variant
    runs as `segment` will run a model of that precision."""
    ref = onnx_probabilities(str(parent), frames)
    got = onnx_probabilities(variant.SerializeToString(), frames, quantized=precision == "int8")
    agreement = PixelCounts()
    ref_scores, got_scores = Scores(), Scores()
    max_diff = 0.0
    for r, g, f in zip(ref, got, frames):
        agreement.add(g >= threshold, r >= threshold)
        ref_scores.add(r >= threshold, f.mask)
        got_scores.add(g >= threshold, f.mask)
        max_diff = max(max_diff, float(np.abs(r - g).max()))
    ref_s, got_s = ref_scores.summary(), got_scores.summary()
    return {
        "mask_iou_vs_fp32": agreement.scores()["iou"],
        "max_probability_difference": max_diff,
        "fp32_pixel_iou": ref_s["pixel_iou"], "variant_pixel_iou": got_s["pixel_iou"],
        "fp32_object_f1": ref_s["object_f1"], "variant_object_f1": got_s["object_f1"],
    }


def write_variant(parent_path: Path, precision: str, out_dir: Path, model: onnx.ModelProto, checks: dict) -> Path:
    info = variant_info(read_model_info(parent_path), precision, checks)
    path = Path(out_dir) / f"{info.name}.onnx"
    tmp = path.with_name(path.name + ".partial")
    onnx.save(attach_info(model, info), str(tmp))
    tmp.replace(path)
    write_variant_card(path)
    return path


def write_variant_card(path: Path) -> Path:
    """A short card beside a variant: what it is a variant of, and how it compared with its parent."""
    path = Path(path)
    info = read_model_info(path)
    checks = info.extra.get("checks", {})
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v:.4f} |" if isinstance(v, float) else f"| {k.replace('_', ' ')} | {v} |"
                     for k, v in checks.items())
    text = f"""# {info.name} {info.version}

{info.extra.get('precision', '')} variant of `{info.extra.get('variant_of')}` (see its card for the training data, split
and command). Same bands, scaling, ground resolution, tiles, threshold ({info.threshold:.2f}) and min peak
({info.min_peak:.2f}).

Made with `deadtree export-variants models/{info.extra.get('variant_of')}.onnx --data <Kaggle-layout folder>`:
int8 is statically quantized (QDQ, per-channel int8 weights, uint8 activations; the first convolution stays in
float so the input image is not rounded to 256 levels) with calibration on training
frames only; fp16 converts weights and activations to half precision with float32 inputs and outputs (the first
convolution again stays in float32).

## Checks against the fp32 parent on the validation split

| check | value |
|---|---|
{rows}
"""
    card = path.with_suffix(".md")
    card.write_text(text)
    return card


CALIBRATION_TILE = 256
INT8_MIN_MASK_IOU = 0.98
INT8_MAX_SCORE_CHANGE = 0.01
FP16_MAX_PROBABILITY_DIFFERENCE = 1e-2
FP16_MIN_MASK_IOU = 0.99


def make_variants(model: Path, data: Path, out_dir: Path, int8: bool = True, fp16: bool = True,
                  max_frames: int = 0) -> list[str]:
    """Build, check and (when they pass) write the variants; returns what happened, a line each."""
    import json

    from deadtree.errors import ModelError
    from deadtree.training.frames import load_frames

    info = read_model_info(model)
    val_groups = set(info.extra.get("validation_groups", []))
    if not val_groups:
        raise ModelError(f"{Path(model).name} records no validation split: export it again with `deadtree export`")
    frames = load_frames(data, info.bands)
    train = [f for f in frames if f.group not in val_groups]
    val = [f for f in frames if f.group in val_groups][: max_frames or None]
    lines = []
    candidates = []
    if int8:
        # calibration crops must fit inside every frame (294 px and up); activation ranges do not depend on size
        candidates.append(("int8", int8_model(model, train, min(info.tile_size, CALIBRATION_TILE)), lambda c: (
            c["mask_iou_vs_fp32"] >= INT8_MIN_MASK_IOU
            and abs(c["variant_pixel_iou"] - c["fp32_pixel_iou"]) <= INT8_MAX_SCORE_CHANGE
            and abs(c["variant_object_f1"] - c["fp32_object_f1"]) <= INT8_MAX_SCORE_CHANGE)))
    if fp16:
        candidates.append(("fp16", fp16_model(model), lambda c: (
            c["max_probability_difference"] <= FP16_MAX_PROBABILITY_DIFFERENCE
            and c["mask_iou_vs_fp32"] >= FP16_MIN_MASK_IOU)))
    for precision, variant, passes in candidates:
        checks = compare_on_frames(model, variant, val, info.threshold, precision)
        checks["checked_on"] = "ONNX Runtime CPU provider, validation frames"
        lines.append(f"{precision}: " + json.dumps({k: v if isinstance(v, str) else round(v, 4)
                                                   for k, v in checks.items()}))
        if passes(checks):
            lines.append(f"wrote {write_variant(model, precision, out_dir, variant, checks)}")
        else:
            lines.append(f"{precision} variant rejected: it does not match fp32 closely enough")
    return lines
