"""ONNX Runtime on a GPU: which provider `segment` gets, model and end-to-end megapixels per second in fp32 and
fp16, and the fp16 and CUDA parity checks against fp32 on the CPU.

Runs the product's own code (deadtree.runtime.session.OnnxModel, deadtree.pipeline.segment_scene), so what it
measures is what `deadtree segment --device cuda` does. Needs onnxruntime-gpu and a CUDA GPU; prints a table
and writes JSON.

    python3 benchmarks/gpu_onnx.py --data DIR --out gpu_onnx.json [--model deadtree-rgbn] [--side 4096]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_scene, mosaic, segment_as_a_command  # noqa: E402  (also puts the checkout on sys.path)
from throughput import model_alone_seconds  # noqa: E402

from deadtree.errors import ModelError  # noqa: E402
from deadtree.metrics import probability_agreement  # noqa: E402
from deadtree.pipeline import SegmentOptions, segment_scene  # noqa: E402
from deadtree.runtime.registry import precision_variant, resolve_model  # noqa: E402
from deadtree.runtime.session import ENV_CUDNN_SEARCH, OnnxModel  # noqa: E402
from deadtree.training.frames import frame_input, load_frames  # noqa: E402


def nvidia_smi(fields: str, units: bool = True) -> str | None:
    """nvidia-smi's answer for the card, e.g. fields="name,memory.total"; None where it cannot be asked."""
    try:
        form = "csv,noheader" if units else "csv,noheader,nounits"
        return subprocess.run(["nvidia-smi", f"--query-gpu={fields}", f"--format={form}"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_name() -> str:
    return nvidia_smi("name,memory.total,driver_version") or "unknown"


def provider_choice(path: Path) -> dict:
    """What each --device gets on this machine, or the message a user would see."""
    choice = {}
    for device in ("auto", "cuda", "tensorrt", "cpu"):
        try:
            choice[device] = OnnxModel(path, device).provider
        except ModelError as exc:
            choice[device] = f"error: {exc}"
    return choice


def model_throughput(path: Path, shapes: list[tuple[int, int]], seconds: float, overlap: int,
                     device: str) -> list[dict]:
    """Tile megapixels per second of the model alone."""
    rows = []
    for model in (OnnxModel(path, device),):
        for tile, batch in shapes:  # smallest first: the arena only grows, so its size after a row is that row's
            x = np.random.default_rng(0).random((batch, len(model.info.bands), tile, tile), dtype=np.float32)
            for _ in range(3):
                model.run(x)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model.run(x)  # returns host memory, so each call is complete when it returns
                calls += 1
            elapsed = time.perf_counter() - start
            tile_mps = batch * tile * tile * calls / elapsed / 1e6
            rows.append({"model": model.info.name, "tile": tile, "batch": batch,
                         "gpu_memory_MiB": gpu_memory_mib() if device == "cuda" else None,
                         "tile_MP_per_s": round(tile_mps, 1),
                         "scene_MP_per_s": round(tile_mps * ((tile - overlap) / tile) ** 2, 1)})
    return rows


def parity(reference: Path, candidates: dict[str, tuple[Path, str]], frames, threshold: float) -> list[dict]:
    """Each candidate (path, device) against the fp32 model on the CPU, frame by frame."""
    def predict(path: Path, device: str) -> list[np.ndarray]:
        model = OnnxModel(path, device)
        return [model.run(frame_input(f))[0, 0, :f.mask.shape[0], :f.mask.shape[1]] for f in frames]

    truth = predict(reference, "cpu")
    rows = []
    for label, (path, device) in candidates.items():
        agreement = probability_agreement(predict(path, device), truth, threshold)
        diff, iou = agreement["max_abs_probability_difference"], agreement["mask_iou"]
        rows.append({"candidate": label, "max_abs_probability_difference": diff, "mask_iou_vs_cpu_fp32": iou,
                     "passes_1e-2_and_0.99": diff <= 1e-2 and iou >= 0.99})
    return rows


def end_to_end(runs: list[dict], device: str) -> list[dict]:
    """`segment` on mosaic scenes of real NAIP tiles (run["side"] px square), each run beside its model alone."""
    rows = []
    for run in runs:
        side = run["side"]
        scene = bench_scene(side)
        os.environ[ENV_CUDNN_SEARCH] = run.get("cudnn", "HEURISTIC")
        with tempfile.TemporaryDirectory() as tmp:
            options = SegmentOptions(output=Path(tmp) / "o.geojson", device=device, precision=run["precision"],
                                     batch_size=run.get("batch"), tile_size=run.get("tile"))
            result = segment_as_a_command(scene, options)
        alone = model_alone_seconds(result, run.get("batch"), side, device=device)
        mp = side * side / 1e6
        rows.append({**run, "model": result.model, "provider": result.provider, "tile_px": result.tile_size,
                     "tiles": result.tiles, "polygons": result.polygons, "total_s": round(result.seconds, 2),
                     "MP_per_s": round(mp / result.seconds, 1), "model_alone_s": round(alone, 2),
                     "model_in_pipeline_s": round(result.timings["model"], 2),
                     "stages_s": {k: round(v, 2) for k, v in result.timings.items()}})
        print(rows[-1], flush=True)
    os.environ.pop(ENV_CUDNN_SEARCH, None)
    return rows


def gpu_memory_mib() -> int | None:
    """Memory in use on the card (this process's ONNX Runtime arena: nothing else runs there)."""
    used = nvidia_smi("memory.used", units=False)
    return int(used.split()[0]) if used and used.split()[0].isdigit() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout frames; the model's validation "
                        "counties among them are used for parity")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="deadtree-rgbn")
    parser.add_argument("--side", type=int, default=4096, help="side of the end-to-end mosaic scene")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing window of each model-alone row")
    parser.add_argument("--device", default="cuda", help="cuda (the point); cpu only to try the script")
    parser.add_argument("--max-frames", type=int, default=0, help="parity on the first N validation frames only")
    args = parser.parse_args()
    import onnxruntime as ort

    fp32 = resolve_model(args.model, "segmenter")
    fp16 = precision_variant(fp32, "fp16", on_gpu=True)
    record = {"benchmark": "gpu_onnx", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "python3 " + " ".join(sys.argv), "gpu": gpu_name(), "onnxruntime": ort.__version__,
              "available": ort.get_available_providers(), "model": args.model, "provider_choice": provider_choice(fp32)}
    print(json.dumps(record, indent=1), flush=True)
    info = OnnxModel(fp32, "cpu").info
    validation = set(info.extra.get("validation_groups", []))
    frames = [f for f in load_frames(args.data, info.bands) if f.group in validation][:args.max_frames or None]
    record["parity"] = {"frames": len(frames), "threshold": info.threshold, "rows": parity(
        fp32, {f"{args.device} fp32": (fp32, args.device), f"{args.device} fp16": (fp16, args.device),
               "cpu fp16": (fp16, "cpu")},
        frames, info.threshold)}
    print(json.dumps(record["parity"], indent=1), flush=True)
    shapes = [(1024, 1), (1024, 4), (512, 16), (1024, 8), (1024, 16), (2048, 4)]
    record["model_alone"] = []
    for path in (fp32, fp16):
        record["model_alone"] += model_throughput(path, shapes, args.seconds, info.overlap, args.device)
        for row in record["model_alone"][-2 * len(shapes):]:
            print(row, flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # first-use imports and CUDA start-up, outside every row
        segment_scene(mosaic(Path(tmp) / "warm.tif", 512), SegmentOptions(output=Path(tmp) / "o.geojson",
                                                                         device=args.device))
    side, big = args.side, 2 * args.side
    record["end_to_end"] = end_to_end([
        {"side": side, "precision": "fp32"}, {"side": side, "precision": "fp16"},
        {"side": side, "precision": "fp16", "cudnn": "EXHAUSTIVE"},
        {"side": side, "precision": "fp16", "batch": 1}, {"side": side, "precision": "fp16", "batch": 8},
        {"side": side, "precision": "fp16", "tile": 2048, "batch": 1},
        {"side": big, "precision": "fp32"}, {"side": big, "precision": "fp16"},
    ], args.device)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
