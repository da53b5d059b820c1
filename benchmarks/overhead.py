"""Benchmark 1b: the pipeline's own work, measured without the model's noise.

    python benchmarks/overhead.py [--side 4096] [--model NAME] [--precision auto] [--repeat 5] [--compress deflate|none]

The throughput benchmark subtracts two long timings of a shared VM whose speed drifts by 10% within minutes,
which leaves the overhead figure (a few seconds out of 10-30) within that noise. Here `segment` runs once with
the model to record its outputs, then again several times with ONNX Runtime replaced by a replay of those
outputs, so the runs time everything except the model: reading and decoding, the statistics pass, stretching,
blending, writing, polygon tracing and the output files, in wall seconds and in CPU seconds of the process.
Beside them, the model alone on the same tiles, measured in the same run (median of --repeat).

On two cores the model keeps both busy, so the pipeline's CPU work beside it adds to the wall time: the CPU
seconds are the figure to cut, and CPU seconds / model-alone seconds is the overhead they imply. The packed
floor is the least overhead that work allows: what runs before the first model call (the scene's statistics
need all of it decoded) plus the CPU seconds after it beyond what the model alone leaves idle, shared by the
cores. Beside a real model the stages never fit its idle moments exactly, so measured overhead is higher.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from common import add_compress_option, bench_scene, record_name, report, segment_as_a_command
from throughput import model_alone

from deadtree.machine import usable_cores
from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.runtime.session import OnnxModel


def recorded_outputs(scene: Path, options: dict) -> tuple[list, object]:
    outputs = []
    real_run = OnnxModel.run

    def record(self, batch):
        out = real_run(self, batch)
        outputs.append(out.copy())
        return out

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(OnnxModel, "run", record):
        result = segment_scene(scene, SegmentOptions(output=Path(tmp) / "o.geojson", **options))
    return outputs, result


def replayed_run(scene: Path, options: dict, outputs: list) -> tuple[float, float, object, tuple[float, float]]:
    """Wall and CPU seconds of `segment` with every model call answered from `outputs`, in order, and the wall
    and CPU seconds it spent before the first model call."""
    answers = iter(outputs)
    before: list[tuple[float, float]] = []

    def replay(self, batch):
        if not before:
            before.append((time.perf_counter() - wall, time.process_time() - cpu))
        return next(answers).copy()  # as ONNX Runtime, a new array per call

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(OnnxModel, "run", replay):
        wall, cpu = time.perf_counter(), time.process_time()
        result = segment_as_a_command(scene, SegmentOptions(output=Path(tmp) / "o.geojson", **options))
        return time.perf_counter() - wall, time.process_time() - cpu, result, before[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", default="auto")
    add_compress_option(parser)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scene = bench_scene(args.side, args.compress)
    options = {"model": args.model, "precision": args.precision}
    outputs, real = recorded_outputs(scene, options)
    replayed_run(scene, options, outputs)  # first use: imports and caches
    cores = usable_cores()
    runs, polygons = [], set()
    for _ in range(max(1, args.repeat)):
        wall, cpu, result, (before_wall, before_cpu) = replayed_run(scene, options, outputs)
        polygons.add(result.polygons)
        alone_wall, alone_cpu = model_alone(real, None, args.side)
        idle_cpu = max(0.0, cores * alone_wall - alone_cpu)  # what the model alone leaves of the cores
        floor = before_wall + max(0.0, cpu - before_cpu - idle_cpu) / cores
        runs.append({"wall": wall, "cpu": cpu, "before_wall": before_wall, "before_cpu": before_cpu,
                     "alone": alone_wall, "alone_idle_cpu": idle_cpu, "floor_pct": 100 * floor / alone_wall})
    if polygons != {real.polygons}:
        raise SystemExit(f"the replay wrote {polygons} polygons, the real run {real.polygons}: not the same work")
    mp = args.side * args.side / 1e6

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    alone, cpu = median("alone"), median("cpu")
    row = {
        "scene": f"{args.side}x{args.side}x4", "scene_compression": args.compress, "model": real.model,
        "tile_px": real.tile_size, "tiles": real.tiles,
        "polygons": real.polygons, "pipeline_wall_s": median("wall"), "pipeline_cpu_s": cpu,
        "pipeline_cpu_s_per_MP": cpu / mp, "model_alone_s": alone,
        "implied_overhead_pct": 100 * cpu / alone,
        "before_model_wall_s": median("before_wall"), "before_model_cpu_s": median("before_cpu"),
        "model_alone_idle_cpu_s": median("alone_idle_cpu"), "packed_floor_pct": median("floor_pct"),
        "cpu_s_all_runs": [round(r["cpu"], 2) for r in sorted(runs, key=lambda r: r["cpu"])],
    }
    report(record_name("overhead", args.compress), [row], {
        "how": "segment with the model's outputs replayed (no model work) against the model alone on the same "
               "tiles; medians of the repeats",
        "packed_floor_pct": "the overhead this work implies if it were packed perfectly around the model: the "
                            "time before the first model call (the statistics need the whole scene), plus the "
                            "rest of the CPU seconds beyond what the model alone leaves idle, spread over "
                            f"the {cores} cores, as a percentage of the model alone",
        "target": "overhead <= 10% of model time",
    })


if __name__ == "__main__":
    main()
