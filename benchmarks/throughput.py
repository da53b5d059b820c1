"""Benchmark 1: megapixels per second of `segment` on a 4096 x 4096 4-band scene, and the pipeline's overhead
(I/O, blending, polygons) as a percentage of the time the model itself needs for the same tiles.

    python benchmarks/throughput.py [--side 4096] [--model NAME] [--precision auto|fp32|int8]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import RESULTS, mosaic, report

from deadtree.pipeline import SegmentOptions, segment_scene


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
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    scene = mosaic(Path(tempfile.gettempdir()) / f"deadtree-bench-{args.side}.tif", args.side)
    # One small run first, so that no row pays for first-use imports (geopandas, pyproj, ...) and caches.
    with tempfile.TemporaryDirectory() as tmp:
        warm = mosaic(Path(tmp) / "warm-up.tif", 512)
        segment_scene(warm, SegmentOptions(output=Path(tmp) / "o.geojson"))
    rows = []
    for name in args.model or [None]:
        for precision in args.precision or ["auto"]:
            for tile in args.tile_size or [None]:
                with tempfile.TemporaryDirectory() as tmp:
                    options = SegmentOptions(output=Path(tmp) / "o.geojson", model=name, batch_size=args.batch_size,
                                             precision=precision, tile_size=tile)
                    result = segment_scene(scene, options)
                rows.append(_row(args.side, result))
    report("throughput", rows, {"target": "overhead <= 10% of model time; >= 4 MP/s end to end"})


def _row(side: int, result) -> dict:
    mp = side * side / 1e6
    model = result.timings["model"]
    return {
        "scene": f"{side}x{side}x4", "model": result.model, "provider": result.provider,
        "tile_px": result.tile_size, "tiles": result.tiles, "polygons": result.polygons, "total_s": result.seconds, "model_s": model,
        "MP_per_s": mp / result.seconds, "model_only_MP_per_s": mp / model,
        "overhead_pct_of_model": 100 * (result.seconds - model) / model,
    }


if __name__ == "__main__":
    main()
