"""Benchmark 2: the same segmenter in ONNX Runtime against PyTorch eager, and the whole pipeline against the
naive loop users write (read the whole scene, run non-overlapping tiles one by one in torch), in one run.

Speed does not depend on the weights, so the torch model is built with the shipped model's architecture and
exported to ONNX here: both engines run exactly the same network. The shipped int8 variant of the default
model (what `segment` runs on a CPU by default) is timed on the same batches, and the pipeline row runs the
shipped default as users get it.

    python benchmarks/engines.py [--side 2048] [--arch ARCH (default: the shipped default model's)]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from common import mosaic, report, segment_as_a_command

from deadtree.nets.segmenter import build_segmenter
from deadtree.pipeline import SegmentOptions
from deadtree.raster.normalise import band_percentiles
from deadtree.runtime.metadata import ModelInfo, read_model_info
from deadtree.runtime.registry import default_segmenter, precision_variant
from deadtree.runtime.session import OnnxModel, cpu_threads
from deadtree.training.export import WithSigmoid, export_onnx


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--tiles", type=int, default=64, help="tiles for the engine comparison")
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())
    shipped = default_segmenter({"R", "G", "B", "NIR"})
    shipped_int8 = precision_variant(shipped, "int8", on_gpu=False)
    args.arch = args.arch or read_model_info(shipped).extra["architecture"]
    tmp = Path(tempfile.mkdtemp())
    net = WithSigmoid(build_segmenter(args.arch, 4)).eval()
    info = ModelInfo(name="bench", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=256, overlap=64, threshold=0.5, extra={"default": True})
    export_onnx(net, info, tmp / "bench.onnx", 4, 256)
    batch = np.random.default_rng(0).random((8, 4, 256, 256), dtype=np.float32)
    n_batches = args.tiles // 8
    ort_model = OnnxModel(tmp / "bench.onnx", "cpu")
    ort_model.run(batch)
    int8_model = OnnxModel(shipped_int8, "cpu")
    int8_model.run(batch)
    x = torch.from_numpy(batch)
    xcl = x.contiguous(memory_format=torch.channels_last)
    net_cl = WithSigmoid(build_segmenter(args.arch, 4)).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        net(x), net_cl(xcl)
        t_ort = timed(lambda: [ort_model.run(batch) for _ in range(n_batches)], 2)
        t_int8 = timed(lambda: [int8_model.run(batch) for _ in range(n_batches)], 2)
        t_torch = timed(lambda: [net(x) for _ in range(n_batches)], 2)
        t_torch_cl = timed(lambda: [net_cl(xcl) for _ in range(n_batches)], 2)
    mp = args.tiles * 256 * 256 / 1e6
    rows = [
        {"engine": f"ONNX Runtime fp32 ({args.arch})", "MP_per_s": mp / t_ort, "vs_torch_eager": t_torch / t_ort},
        {"engine": f"ONNX Runtime int8 ({Path(shipped_int8).stem})", "MP_per_s": mp / t_int8,
         "vs_torch_eager": t_torch / t_int8},
        {"engine": "torch eager", "MP_per_s": mp / t_torch, "vs_torch_eager": 1.0},
        {"engine": "torch eager channels_last", "MP_per_s": mp / t_torch_cl, "vs_torch_eager": t_torch / t_torch_cl},
    ]

    scene = mosaic(Path(tempfile.gettempdir()) / f"deadtree-bench-{args.side}.tif", args.side)
    scene_mp = args.side * args.side / 1e6

    def pipeline():
        return segment_as_a_command(scene, SegmentOptions(output=tmp / "o.geojson"))  # the default, as users run it

    def naive():
        # what users write: the whole scene in memory, a per-tile stretch, one tile at a time, no overlap
        with rasterio.open(scene) as ds:
            image = ds.read().astype(np.float32)
        probs = np.zeros(image.shape[1:], np.float32)
        with torch.inference_mode():
            for r in range(0, args.side, 256):
                for c in range(0, args.side, 256):
                    tile = image[:, r:r + 256, c:c + 256]
                    scaled = band_percentiles(tile).apply(tile)
                    probs[r:r + 256, c:c + 256] = net(torch.from_numpy(scaled[None]))[0, 0].numpy()
        return probs

    result = pipeline()
    t_pipe = result.seconds
    t_naive = timed(naive)
    info = read_model_info(shipped)
    rows += [
        {"engine": f"deadtree segment ({result.model}), {args.side}^2 scene, {info.tile_size} px tiles, "
                   f"{info.overlap} px overlap", "MP_per_s": scene_mp / t_pipe,
         "vs_torch_eager": t_naive / t_pipe},
        {"engine": f"naive torch fp32 loop ({args.arch}), {args.side}^2 scene, 256 px tiles, no overlap",
         "MP_per_s": scene_mp / t_naive,
         "vs_torch_eager": 1.0},
    ]
    report("engines", rows, {
        "targets": "ONNX Runtime >= 2x torch eager on CPU; pipeline faster than the naive loop",
        "note": "rows 1-3: the same 8-tile batches; vs_torch_eager = speed-up over plain torch eager. "
                "Rows 4-5: whole scene; vs_torch_eager there = speed-up of the pipeline over the naive loop.",
    })


if __name__ == "__main__":
    main()
