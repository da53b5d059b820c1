"""Benchmark 3: peak memory (max RSS) of `deadtree segment` on a 25-megapixel and a 400-megapixel scene.

Each run is a fresh process, so its max RSS is its own. Targets: <= 1.5 GB at 400 MP, and no more than 30%
above the 25 MP figure.

    python benchmarks/memory.py [--sides 5000 20000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from common import bench_scene, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sides", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    rows = []
    for side in args.sides:
        scene = bench_scene(side)
        with tempfile.TemporaryDirectory() as tmp:
            code = (
                "import resource, sys, json\n"
                "from deadtree.pipeline import SegmentOptions, segment_scene\n"
                f"r = segment_scene({str(scene)!r}, SegmentOptions(output={tmp!r} + '/o.geojson', "
                f"model={args.model!r}))\n"
                "print(json.dumps({'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
                "'polygons': r.polygons, 'seconds': r.seconds}))\n"
            )
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])


            out = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append({"scene": f"{side}x{side}x4", "megapixels": round(side * side / 1e6, 1),
                     "max_rss_MB": out["rss_kb"] / 1024, "polygons": out["polygons"],
                     "seconds": time.perf_counter() - started})
    if len(rows) >= 2:
        for r in rows:
            r["growth_vs_first_pct"] = 100 * (r["max_rss_MB"] / rows[0]["max_rss_MB"] - 1)
    report("memory", rows, {"targets": "<= 1536 MB at 400 MP; <= 30% above the 25 MP figure"})


if __name__ == "__main__":
    main()
