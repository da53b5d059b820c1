"""Does segmenting in a process slow torch in that process? A notebook segments, then trains.

    python benchmarks/torch_after_segment.py [--side 2048] [--steps 6]

In one fresh process: a few training steps of the default training network on random crops, timed; then
`segment_scene` on the benchmark mosaic; then the same steps again. The library changes nothing of its host's
(allocator, thread priorities, caches): the ratio of the step times should be 1 within the machine's noise.
(Before 2026-11-28 the run's heap settings outlived it and torch ran at half speed afterwards.)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import bench_scene, report

from deadtree.nets.segmenter import build_segmenter
from deadtree.pipeline import SegmentOptions, segment_scene


def step_seconds(steps: int) -> float:
    torch.manual_seed(0)
    model = build_segmenter("unet-r10k3-d4-h2r", 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(8, 4, 256, 256)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        loss = model(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    scene = bench_scene(args.side)
    before = step_seconds(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        result = segment_scene(scene, SegmentOptions(output=Path(tmp) / "o.geojson"))
    after = step_seconds(args.steps)
    report("torch_after_segment", [{"scene": f"{args.side}x{args.side}x4", "polygons": result.polygons,
                                     "torch_step_s_before": round(before, 3), "torch_step_s_after": round(after, 3),
                                     "after_over_before": round(after / before, 3)}],
           {"command": f"python benchmarks/torch_after_segment.py --side {args.side} --steps {args.steps}"})


if __name__ == "__main__":
    main()
