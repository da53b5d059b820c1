"""Score `segment` on the validation frames mosaicked into one scene per county, so that one scene-wide stretch,
tiles that span several frames and nodata gaps between them replace the per-frame scenes of
scripts/segment_validation.py. If the two agree, the validation figures hold for scenes larger than a frame.

    python scripts/county_mosaic_validation.py --model deadtree-rgbn --data ../shared/data/usa_deadtree \
        --out docs/results/county_mosaic_validation.json

Frames sit on a black background with GAP px between them (edge-connected fill: nodata to `segment`); the
polygons are rasterised back onto the mosaic and each frame's part is scored against its mask, pooled.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from deadtree.evaluation.domain_study import write_frame_scene
from deadtree.evaluation.frame_validation import segment_mask
from deadtree.metrics import Scores
from deadtree.runtime.metadata import read_model_info
from deadtree.runtime.registry import resolve_model
from deadtree.training.frames import Frame, held_out, load_frames
from validation_runs import add_result

GAP = 64  # px of black between frames and around them


def mosaic(frames: list[Frame]) -> tuple[np.ndarray, list[tuple[Frame, int, int]]]:
    """The frames in rows of about sqrt(n), on black, and where each one's top-left corner lies."""
    per_row = int(np.ceil(np.sqrt(len(frames))))
    rows = [frames[i:i + per_row] for i in range(0, len(frames), per_row)]
    heights = [max(f.image.shape[0] for f in row) for row in rows]
    width = max(sum(f.image.shape[1] for f in row) + GAP * (len(row) + 1) for row in rows)
    image = np.zeros((sum(heights) + GAP * (len(rows) + 1), width, frames[0].image.shape[2]), np.uint8)
    places, y = [], GAP
    for row, height in zip(rows, heights):
        x = GAP
        for frame in row:
            rows_, cols = frame.mask.shape
            image[y:y + rows_, x:x + cols] = frame.image
            places.append((frame, y, x))
            x += cols + GAP
        y += height + GAP
    return image, places


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    info = read_model_info(resolve_model(args.model, "segmenter"))
    counties = defaultdict(list)
    for frame in held_out(load_frames(args.data, info.bands), info.extra["validation_groups"]):
        counties[frame.group].append(frame)
    pooled, by_state, sizes = Scores(), defaultdict(Scores), {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for county, frames in sorted(counties.items()):
            image, places = mosaic(frames)
            scene = write_frame_scene(image, info.bands, tmp / "mosaic.tif")
            predicted = segment_mask(scene, tmp, model=args.model, bands=tuple(info.bands), precision=args.precision,
                                     progress=False)
            for frame, y, x in places:
                rows, cols = frame.mask.shape
                part = predicted[y:y + rows, x:x + cols]
                pooled.add(part, frame.mask)
                by_state[county[:2]].add(part, frame.mask)
            sizes[county] = [len(frames), *image.shape[:2]]
            print(f"{county}: {len(frames)} frames, {image.shape[0]} x {image.shape[1]} px", flush=True)
    summary = pooled.summary()
    print(f"{args.model} {args.precision}, county mosaics: pixel IoU {summary['pixel_iou']:.3f}, object F1 "
          f"{summary['object_f1']:.3f} (precision {summary['object_precision']:.3f}, "
          f"recall {summary['object_recall']:.3f})")
    add_result(args.out, "segment run on one mosaic per validation county (frames on black, GAP px apart), polygons "
               "rasterised back and scored per frame, pooled", f"{args.model} {args.precision}", {
                   **summary, "by_state": {s: {k: v for k, v in c.summary().items() if k in ("pixel_iou", "object_f1")}
                                           for s, c in sorted(by_state.items())},
                   "mosaics": sizes, "gap_px": GAP, "seconds": round(time.monotonic() - started, 1),
                   "command": f"python scripts/county_mosaic_validation.py --model {args.model} "
                              f"--precision {args.precision} --data {args.data} --out {args.out}"})


if __name__ == "__main__":
    main()
