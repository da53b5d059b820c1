"""What a segmenter scores on its validation frames under two ways of preparing them, both predicted whole:

- "fill in the stretch": how training and validation prepared frames before 2026-11-27: each band's 1-99
  percentile stretch over all pixels, the black rims most USA frames have at their edges included and shown to
  the network as they are;
- "as segment reads a scene" (deadtree.training.frames.as_scene, used since): edge-connected fill left out of the
  stretch and set to the valid pixels' median, which is what `segment` does with every scene.

    python scripts/input_preparation.py models/checkpoints/deadtree-rgbn-0.5.0.pt --data ../shared/data/usa_deadtree \
        --out docs/results/input_preparation.json

A model trained on the first and validated on it scores higher there than `segment` can get from it; the gap
is what the model cards' figures overstated until then. Results are added to --out under the checkpoint's name.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deadtree.nets.segmenter import load_segmenter
from deadtree.raster.normalise import BandStretch, band_percentiles
from deadtree.training.frames import Frame, as_scene, held_out, load_frames
from deadtree.training.segmenter_trainer import evaluate
from validation_runs import add_result

KEYS = ("pixel_iou", "object_f1", "threshold", "min_peak", "peak_pixel_iou", "peak_object_precision",
        "peak_object_recall", "peak_object_f1", "peak_held_out_object_f1")


def fill_in_the_stretch(frame: Frame) -> tuple[np.ndarray, BandStretch]:
    return frame.image, band_percentiles(frame.image.transpose(2, 0, 1))


PREPARATIONS = {"fill in the stretch": fill_in_the_stretch, "as segment reads a scene": as_scene}


def scores(model, frames: list[Frame], prepare) -> dict:
    found = evaluate(model, frames, prepare=prepare)
    return {k: round(float(found[k]), 4) for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model, ckpt = load_segmenter(args.checkpoint)
    frames = held_out(load_frames(args.data, tuple(ckpt["config"]["bands"])), ckpt["split"]["validation_groups"])
    found = {name: scores(model, frames, prepare) for name, prepare in PREPARATIONS.items()}
    for name, s in found.items():
        print(f"{args.checkpoint.name}, {name}: pixel IoU {s['pixel_iou']:.3f}, object F1 {s['object_f1']:.3f}, "
              f"with the floor {s['peak_object_f1']:.3f} (held out {s['peak_held_out_object_f1']:.3f})")
    add_result(args.out, "validation scores of a checkpoint under two frame preparations, frames predicted whole in "
               "fp32, threshold and floor tuned on validation as the trainer does", args.checkpoint.name, {
                   "frames": len(frames), **found,
                   "command": f"python scripts/input_preparation.py {args.checkpoint} --data {args.data} "
                              f"--out {args.out}"})


if __name__ == "__main__":
    main()
