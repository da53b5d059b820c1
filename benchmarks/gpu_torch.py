"""GPU throughput and half-precision parity of a segmenter, in PyTorch on CUDA.

The same network in PyTorch, beside ONNX Runtime's CUDA provider (benchmarks/gpu_onnx.py): megapixels per
second at the shipped tile size in fp32, TF32, fp16 and bf16, and the fp16 checks (probabilities within 1e-2 of
fp32, masks at IoU >= 0.99) on the validation frames. Needs only torch, so it also runs where onnxruntime-gpu
cannot be installed. Prints a table and writes JSON.

    python3 benchmarks/gpu_torch.py CHECKPOINT --data DIR --out gpu_torch.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deadtree.metrics import probability_agreement  # noqa: E402
from deadtree.nets.segmenter import load_segmenter  # noqa: E402
from deadtree.training.devices import training_machine  # noqa: E402
from deadtree.training.frames import frame_input, held_out, load_frames  # noqa: E402

MODES = ("fp32", "tf32", "fp16", "bf16")


def runner(model: torch.nn.Module, mode: str):
    """A function mapping an fp32 batch on the model's device to fp32 probabilities, computed in `mode`."""
    device = next(model.parameters()).device
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    net = copy.deepcopy(model).half() if mode == "fp16" else model  # the fp32 weights stay untouched

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if mode == "fp16":
            return torch.sigmoid(net(x.half())).float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            return torch.sigmoid(net(x)).float()

    return run


def throughput(model, bands: int, tile: int, overlap: int, batch: int, seconds: float) -> list[dict]:
    device = next(model.parameters()).device
    x = torch.rand(batch, bands, tile, tile, device=device)
    rows = []
    for mode in MODES:
        run = runner(model, mode)
        for _ in range(3):
            run(x)
        synchronize(device)
        iterations, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            run(x)
            iterations += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        tile_mps = batch * tile * tile * iterations / elapsed / 1e6
        # Overlapping tiles compute each scene pixel ((tile) / (tile - overlap))^2 times.
        scene_mps = tile_mps * ((tile - overlap) / tile) ** 2
        rows.append({"mode": mode, "tile_mp_per_s": round(tile_mps, 1), "scene_mp_per_s": round(scene_mps, 1),
                     "batch": batch, "tile": tile, "overlap": overlap, "seconds": round(elapsed, 2)})
    return rows


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parity(model, frames, threshold: float) -> list[dict]:
    device = next(model.parameters()).device
    outputs, reference = {}, None
    for mode in MODES:
        run = runner(model, mode)
        outputs[mode] = [run(torch.from_numpy(frame_input(f)).to(device))[0, 0, :f.mask.shape[0], :f.mask.shape[1]]
                         .cpu().numpy() for f in frames]
        if mode == "fp32":
            reference = outputs[mode]
    rows = []
    for mode in MODES[1:]:
        agreement = probability_agreement(outputs[mode], reference, threshold)
        diff, iou = agreement["max_abs_probability_difference"], agreement["mask_iou"]
        rows.append({"mode": mode, "max_abs_probability_difference": diff, "mask_iou_vs_fp32": iou,
                     "passes_fp16_checks": diff <= 1e-2 and iou >= 0.99})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout frames (validation split read)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--device", default="cuda", help="cuda (the point); cpu only to try the script")
    parser.add_argument("--max-frames", type=int, default=0, help="parity on the first N validation frames only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_torch.py needs a CUDA GPU")
    device = torch.device(args.device)

    model, ckpt = load_segmenter(args.checkpoint)
    model = model.to(device, memory_format=torch.channels_last)
    bands = tuple(ckpt["config"]["bands"])
    frames = held_out(load_frames(args.data, bands), ckpt["split"]["validation_groups"])[:args.max_frames or None]
    threshold = float((ckpt["state"].get("best") or {}).get("threshold", 0.5))
    record = {
        "machine": training_machine(device),
        "torch": torch.__version__,
        "checkpoint": args.checkpoint.name,
        "arch": ckpt["config"]["arch"],
        "throughput": throughput(model, len(bands), args.tile, args.overlap, args.batch, args.seconds),
        "parity": {"frames": len(frames), "threshold": threshold, "rows": parity(model, frames, threshold)},
    }
    print(f"{record['machine']}, torch {torch.__version__}, {record['arch']}")
    print(f"{'mode':6} {'tile MP/s':>10} {'scene MP/s':>11}")
    for row in record["throughput"]:
        print(f"{row['mode']:6} {row['tile_mp_per_s']:10.1f} {row['scene_mp_per_s']:11.1f}")
    for row in record["parity"]["rows"]:
        print(f"{row['mode']} vs fp32 on {len(frames)} validation frames: max |dp| "
              f"{row['max_abs_probability_difference']:.2e}, mask IoU {row['mask_iou_vs_fp32']:.4f}")
    args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
