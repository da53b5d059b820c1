"""Benchmark 1: megapixels per second of `segment` on a 4096 x 4096 4-band scene, and the pipeline's overhead
(I/O, blending, polygons) as a percentage of the time the model itself needs for the same tiles.

    python benchmarks/throughput.py [--side 4096] [--model NAME] [--precision auto|fp32|int8] [--repeat 3]
        [--graph auto|all|tidied|keep-layout|extended] [--compress deflate|none]

Options given more than once are compared, and the repeats of all configurations take turns (one run of each,
then the next round), so that a shared VM's drift falls on all of them alike.
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from common import RESULTS, add_compress_option, bench_scene, mosaic, record_name, report, segment_as_a_command

from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.runtime.session import ENV_GRAPH_OPTIMIZATION, GRAPH_OPTIMIZATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--model", action="append", default=None,
                        help="model name or path; repeat to compare (default: the shipped default)")
    parser.add_argument("--precision", action="append", default=None,
                        help="auto (int8 on a CPU where shipped), fp32, int8; repeat to compare (default: auto)")
    parser.add_argument("--tile-size", type=int, action="append", default=None,
                        help="tile size in pixels; repeat to compare (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--graph", action="append", default=None, choices=GRAPH_OPTIMIZATIONS,
                        help="how ONNX Runtime optimises the graph (as DEADTREE_GRAPH_OPTIMIZATION); repeat to "
                        "compare, e.g. --graph tidied --graph keep-layout (default: auto, the rule for this CPU)")
    add_compress_option(parser)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each configuration, each followed by its model-alone run; the row is the "
                        "run with the median overhead (a shared VM's speed drifts by 10%% within minutes)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    scene = bench_scene(args.side, args.compress)
    # One small run first, so that no row pays for first-use imports (geopandas, pyproj, ...) and caches.
    with tempfile.TemporaryDirectory() as tmp:
        warm = mosaic(Path(tmp) / "warm-up.tif", 512)
        segment_scene(warm, SegmentOptions(output=Path(tmp) / "o.geojson"))
    configs = list(itertools.product(args.model or [None], args.precision or ["auto"], args.tile_size or [None],
                                     args.graph or [None]))
    runs: dict[tuple, list[dict]] = {config: [] for config in configs}
    for _ in range(max(1, args.repeat)):
        for config in configs:
            name, precision, tile, graph = config
            # the variable for this configuration only (None: as it was)
            with mock.patch.dict(os.environ, {ENV_GRAPH_OPTIMIZATION: graph} if graph else {}), \
                    tempfile.TemporaryDirectory() as tmp:
                options = SegmentOptions(output=Path(tmp) / "o.geojson", model=name, batch_size=args.batch_size,
                                         precision=precision, tile_size=tile)
                result = segment_as_a_command(scene, options)
                row = _row(args.side, result, model_alone_seconds(result, args.batch_size, args.side))
            row["scene_compression"] = args.compress
            if args.graph:
                row["graph"] = graph
            runs[config].append(row)
    rows = []
    for config in configs:
        ordered = sorted(runs[config], key=lambda r: r["overhead_pct_of_model"])
        row = ordered[len(ordered) // 2]
        row["overhead_pct_all_runs"] = [round(r["overhead_pct_of_model"], 1) for r in ordered]
        rows.append(row)
    report(record_name("throughput", args.compress), rows,
           {"target": "overhead <= 10% of model time; >= 4 MP/s end to end"})


def model_alone_seconds(result, batch_size: int | None, side: int, device: str = "cpu") -> float:
    """The same model, session settings and tiles (edge tiles cut short as `segment` cuts them), run alone: no
    reading, blending or tracing on the other threads. Inside `segment` the model shares the cores with those
    stages, so its own clock (model_in_pipeline_s) runs slower than this; the overhead is measured against
    this figure."""
    return model_alone(result, batch_size, side, device)[0]


def model_alone(result, batch_size: int | None, side: int, device: str = "cpu") -> tuple[float, float]:
    """model_alone_seconds, and the process's CPU seconds in that time (user and system, all threads)."""
    from deadtree.pipeline import BATCH_PIXELS
    from deadtree.runtime.session import OnnxModel
    from deadtree.tiling import TRIM_MULTIPLE, batches_by_shape, tile_rows

    model = OnnxModel(result.model_path, device)  # the file `segment` ran, a shipped model's or one given as a path
    tile = result.tile_size
    batch = batch_size or max(1, BATCH_PIXELS // (tile * tile))
    shapes = [(t.height, t.width) for row in tile_rows(side, side, tile, result.overlap, trim=TRIM_MULTIPLE)
              for t in row]
    if len(shapes) != result.tiles:
        raise RuntimeError(f"segment ran {result.tiles} tiles, the benchmark's grid has {len(shapes)}")
    x = np.random.default_rng(0).random((batch, len(model.info.bands), tile, tile), dtype=np.float32)
    for rows, cols in set(shapes):
        model.run(x[:1, :, :rows, :cols])  # first call of each shape: allocations (and cuDNN's search)
    started, cpu = time.perf_counter(), time.process_time()
    for calls in batches_by_shape(shapes, lambda shape: shape, batch):  # the calls `segment` makes
        rows, cols = calls[0]
        model.run(x[:len(calls), :, :rows, :cols])
    return time.perf_counter() - started, time.process_time() - cpu


def _row(side: int, result, alone: float) -> dict:
    """One run's figures. The overhead over the model alone splits into the time before the first model call,
    the model's own slowdown inside the pipeline (its calls against the same calls alone), the gaps between its
    calls, and the time after the last one: they add up to total_s - model_alone_s."""
    mp = side * side / 1e6
    inside = result.timings["model"]
    return {
        "scene": f"{side}x{side}x4", "model": result.model, "provider": result.provider,
        "tile_px": result.tile_size, "tiles": result.tiles, "polygons": result.polygons, "total_s": result.seconds,
        "model_alone_s": alone, "model_in_pipeline_s": inside,
        "MP_per_s": mp / result.seconds, "model_alone_MP_per_s": mp / alone,
        "overhead_pct_of_model": 100 * (result.seconds - alone) / alone,
        "before_model_s": result.timings["before_model"], "model_slowdown_s": inside - alone,
        "between_model_calls_s": result.timings["between_model_calls"], "after_model_s": result.timings["after_model"],
    }


if __name__ == "__main__":
    main()
