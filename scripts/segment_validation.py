"""Score `segment` itself, as users run it, on every frame of a model's validation split.

    python scripts/segment_validation.py --model deadtree-rgbn [--ensemble deadtree-rgb] [--min-peak 0] [--flips] \
        --data ../shared/data/usa_deadtree --out docs/results/segment_validation.json

Each validation frame becomes a small georeferenced GeoTIFF, `segment` writes its polygons (GeoPackage, the
scene's CRS) with the options given (default precision: what `segment` picks on this machine), and the polygons
are rasterised back onto the frame's grid and scored against its mask, pooled over all frames. Unlike the
model cards' figures (probabilities thresholded directly) this includes tiling, int8, polygon simplification,
the minimum area and the peak filter. Results are added to --out under a label naming the options.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from deadtree.evaluation.domain_study import write_frame_scene
from deadtree.evaluation.frame_validation import segment_mask
from deadtree.metrics import Scores
from deadtree.pipeline import parse_scales
from deadtree.runtime.metadata import read_model_info
from deadtree.runtime.registry import resolve_model
from deadtree.training.frames import held_out, load_frames
from validation_runs import add_result


def label_of(args) -> str:
    parts = [args.model, *(f"+ {m}" for m in args.ensemble)]
    if args.min_peak is not None:
        parts.append(f"min-peak {args.min_peak:g}")
    if args.flips:
        parts.append("flips")
    if args.scales:
        parts.append(f"scales {args.scales}")
    parts.append(args.precision)
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--ensemble", action="append", default=[])
    parser.add_argument("--min-peak", type=float, default=None, help="default: the model's own")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--flips", action="store_true", help="as `segment --flips`")
    parser.add_argument("--scales", default="", help="as `segment --scales`, e.g. 1.5")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/results/segment_validation.json"))
    args = parser.parse_args()

    info = read_model_info(resolve_model(args.model, "segmenter"))
    frames = held_out(load_frames(args.data, info.bands), info.extra["validation_groups"])
    scores = Scores()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for frame in tqdm(frames, desc=label_of(args), unit="frame"):
            scene = write_frame_scene(frame.image, info.bands, tmp / "frame.tif")
            scores.add(segment_mask(scene, tmp, model=args.model, ensemble=tuple(args.ensemble),
                                    bands=tuple(info.bands), min_peak=args.min_peak, precision=args.precision,
                                    flips=args.flips, scales=parse_scales(args.scales)), frame.mask)
    add_result(args.out, "segment run on each validation frame, its polygons rasterised and scored against the masks",
               label_of(args), {
                   **scores.summary(), "frames": len(frames), "seconds": round(time.monotonic() - started, 1),
                   "command": "python scripts/segment_validation.py --model " + args.model
                   + "".join(f" --ensemble {m}" for m in args.ensemble)
                   + (f" --min-peak {args.min_peak:g}" if args.min_peak is not None else "")
                   + (" --flips" if args.flips else "")
                   + (f" --scales {args.scales}" if args.scales else "")
                   + f" --precision {args.precision} --data {args.data}",
               })
    summary = scores.summary()
    print(f"{label_of(args)}: pixel IoU {summary['pixel_iou']:.3f}, object F1 {summary['object_f1']:.3f} "
          f"(precision {summary['object_precision']:.3f}, recall {summary['object_recall']:.3f})")


if __name__ == "__main__":
    main()
