"""Benchmark 2: the same segmenter in ONNX Runtime against PyTorch eager, and the whole pipeline against the
naive loop users write (read the whole scene, run non-overlapping tiles one by one in torch), in one run.

Speed does not depend on the weights, so the torch model is built with the shipped model's architecture and
exported to ONNX here: both engines run exactly the same network. The shipped int8 variant of the default
model (what `segment` runs on a CPU by default) is timed on the same batches, and the pipeline row runs the
shipped default as users get it.

    python benchmarks/engines.py [--side 2048] [--rounds 5] [--processes 3]
        [--arch ARCH (default: the shipped default model's)]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from common import bench_scene, report, segment_as_a_command
from floor import count_macs, matmul_run

from deadtree.nets.segmenter import build_segmenter
from deadtree.pipeline import SegmentOptions
from deadtree.raster.normalise import band_percentiles
from deadtree.runtime.metadata import ModelInfo, read_model_info
from deadtree.runtime.registry import default_segmenter, precision_variant
from deadtree.runtime.session import OnnxModel, cpu_threads
from deadtree.training.export import WithSigmoid, export_onnx


CEILING = "ceiling: its multiply-adds at ONNX Runtime's fp32 matmul rate"


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def rounds_of(engines: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each engine in each round, the engines taking turns within a round: the VM's speed drifts
    by 10% within minutes, so engines timed minutes apart would compare the drift as much as the engines."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, run in engines.items():
            seconds[name].append(timed(run))
    return seconds


def compare_engines(arch: str, tiles: int, rounds: int, shipped: Path, tmp: Path) -> dict:
    """Each engine's seconds for the same batches in each round, the engines taking turns; the network's
    operations; the name of the int8 engine."""
    net = WithSigmoid(build_segmenter(arch, 4)).eval()
    shipped_int8 = precision_variant(shipped, "int8", on_gpu=False)
    info = ModelInfo(name="bench", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=256, overlap=64, threshold=0.5, extra={"default": True})
    export_onnx(net, info, tmp / "bench.onnx", 4, 256)
    batch = np.random.default_rng(0).random((8, 4, 256, 256), dtype=np.float32)
    n_batches = tiles // 8
    ort_model = OnnxModel(tmp / "bench.onnx", "cpu")
    int8_model = OnnxModel(shipped_int8, "cpu")
    x = torch.from_numpy(batch)
    xcl = x.contiguous(memory_format=torch.channels_last)
    net_cl = WithSigmoid(build_segmenter(arch, 4)).eval().to(memory_format=torch.channels_last)
    int8_name = f"ONNX Runtime int8 ({Path(shipped_int8).stem})"
    engines = {
        f"ONNX Runtime fp32 ({arch})": lambda: ort_model.run(batch),
        int8_name: lambda: int8_model.run(batch),
        "torch eager": lambda: net(x),
        "torch eager channels_last": lambda: net_cl(xcl),
    }
    # The ceiling: the network's multiply-adds done at ONNX Runtime's own matrix-multiply rate, timed in the same
    # rounds. That rate is about the CPU's fp32 peak, so an engine doing the same multiply-adds beats torch eager
    # by little more than this (convolutions can run a few per cent above a 2048^3 MatMul).
    flops = 2 * count_macs(tmp / "bench.onnx", 4, 256) * tiles
    matmul, matmul_flops = matmul_run()
    matmul_calls = max(1, round(flops / matmul_flops))
    with torch.inference_mode():
        for run in engines.values():  # first calls: allocations, kernels chosen
            run()
        matmul()
        seconds = rounds_of({name: lambda run=run: [run() for _ in range(n_batches)]
                             for name, run in engines.items()} |
                            {CEILING: lambda: [matmul() for _ in range(matmul_calls)]}, rounds)
    # the matmul rounds' seconds as the seconds the network's operations take at that rate
    seconds[CEILING] = [t * flops / (matmul_flops * matmul_calls) for t in seconds[CEILING]]
    return {"seconds": seconds, "flops": flops, "int8_engine": int8_name}


def engine_rows(workers: list[dict], tiles: int, same_net_int8: bool) -> list[dict]:
    """A row per engine from every worker's rounds: MP/s from the median round; the speed-up over torch eager
    and the share of the matmul rate as the median over all rounds (each against its own round), with the
    range over rounds and each process's median."""
    mp = tiles * 256 * 256 / 1e6
    flops = workers[0]["flops"]
    rows = []
    for name in workers[0]["seconds"]:
        times = [t for w in workers for t in w["seconds"][name]]
        ratios = [[e / t for e, t in zip(w["seconds"]["torch eager"], w["seconds"][name])] for w in workers]
        of_rate = [c / t for w in workers for c, t in zip(w["seconds"][CEILING], w["seconds"][name])]
        pooled = [r for process in ratios for r in process]
        row = {"engine": name, "MP_per_s": mp / statistics.median(times), "vs_torch_eager": statistics.median(pooled),
               "vs_torch_eager_rounds": f"{min(pooled):.2f}-{max(pooled):.2f}",
               "vs_torch_eager_processes": " ".join(f"{statistics.median(r):.2f}" for r in ratios)}
        if name != workers[0]["int8_engine"] or same_net_int8:  # the shipped int8 model is another network otherwise
            row |= {"GFLOP_per_s": flops / statistics.median(times) / 1e9, "of_matmul_rate": statistics.median(of_rate)}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--tiles", type=int, default=64, help="tiles for the engine comparison")
    parser.add_argument("--rounds", type=int, default=5, help="rounds in which the engines take turns")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes the rounds run in, one after another (torch eager's speed differs "
                        "more between processes than between rounds)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())
    shipped = default_segmenter({"R", "G", "B", "NIR"})
    shipped_arch = read_model_info(shipped).extra["architecture"]
    args.arch = args.arch or shipped_arch
    with tempfile.TemporaryDirectory() as tmp:  # the exported network, the workers' rounds, the outputs
        run_benchmark(args, shipped, shipped_arch, Path(tmp))


def run_benchmark(args, shipped: Path, shipped_arch: str, tmp: Path) -> None:
    """A worker's rounds, or the whole benchmark: the rounds in fresh processes, then the scene rows."""
    if args.worker:
        args.worker.write_text(json.dumps(compare_engines(args.arch, args.tiles, args.rounds, shipped, tmp)))
        return
    workers = []
    for i in range(max(1, args.processes)):
        out = tmp / f"rounds-{i}.json"
        subprocess.run([sys.executable, __file__, "--arch", args.arch, "--tiles", str(args.tiles), "--rounds",
                        str(args.rounds), "--worker", str(out)], check=True)
        workers.append(json.loads(out.read_text()))
    rows = engine_rows(workers, args.tiles, same_net_int8=args.arch == shipped_arch)
    net = WithSigmoid(build_segmenter(args.arch, 4)).eval()

    scene = bench_scene(args.side)
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

    # The naive loop before `segment`, so that nothing a run leaves in the process can slow torch (its heap
    # settings once did, by half: deadtree.heap).
    with torch.inference_mode():
        net(torch.from_numpy(np.zeros((1, 4, 256, 256), np.float32)))  # its first call: kernels chosen
    t_naive = timed(naive)
    result = pipeline()
    t_pipe = result.seconds
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
        "note": "rows 1-6: the same 8-tile batches, the engines taking turns in each of --rounds rounds, in each of "
                "--processes fresh processes; MP_per_s from the median round, vs_torch_eager = the median of all "
                "rounds' speed-ups over plain torch eager in the same round (their range, and each process's "
                "median, beside it). GFLOP_per_s: the network's multiply-adds (x2) a second; of_matmul_rate: "
                "that as a share of ONNX Runtime's 2048^3 fp32 MatMul rate in the same round (int8: above 1, it "
                "runs integer arithmetic). The ceiling row: those multiply-adds done at that rate, timed in the "
                "same rounds, about the CPU's fp32 peak: an engine doing the same arithmetic outruns torch eager by "
                "little more. Rows after "
                "it: whole scene; vs_torch_eager there = speed-up of the pipeline over the naive loop.",
    })


if __name__ == "__main__":
    main()
