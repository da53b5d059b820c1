"""Score every mean of two or three segmenter checkpoints on their shared validation split.

    python scripts/ensemble_search.py rgbn=models/checkpoints/deadtree-rgbn-0.2.0.pt \
        effb0=models/checkpoints/deadtree-rgbn-effb0-0.3.0.pt ... --data ../shared/data/usa_deadtree \
        --out docs/results/gpu_sweep_ensembles.json

Each checkpoint predicts the validation frames whole in fp32 on the bands it was trained on; for every
combination the pixel threshold is tuned for pooled IoU, then the peak filter's floor for object F1, with the
floor's held-out estimate (chosen per county on the other counties). All checkpoints must share one split.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
from pathlib import Path

import numpy as np

from deadtree.nets.segmenter import load_segmenter
from deadtree.peak_filter import tune_peak
from deadtree.training.frames import held_out, load_frames
from deadtree.training.segmenter_trainer import THRESHOLDS, frame_probabilities, tuned_scores


def validation_probabilities(checkpoint: Path, frames_of) -> tuple[list, list]:
    """The checkpoint's probabilities on its validation frames, and those frames (`frames_of(bands)`: the
    data set read with those bands)."""
    model, ckpt = load_segmenter(checkpoint)
    frames = held_out(frames_of(tuple(ckpt["config"]["bands"])), ckpt["split"]["validation_groups"])
    return [frame_probabilities(model, f, False) for f in frames], frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="NAME=CHECKPOINT")
    parser.add_argument("--data", required=True)
    parser.add_argument("--largest", type=int, default=3, help="most members in one mean")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    frames_of = functools.lru_cache(maxsize=None)(lambda bands: load_frames(args.data, bands))  # once per band set
    probs, frames = {}, None
    for spec in args.models:
        name, _, path = spec.partition("=")
        probs[name], model_frames = validation_probabilities(Path(path), frames_of)
        if frames is not None and [f.sample_id for f in model_frames] != [f.sample_id for f in frames]:
            raise SystemExit(f"{name} was validated on other frames: all checkpoints must share one split")
        frames = model_frames
        print(f"{name}: predicted {len(frames)} validation frames", flush=True)
    truths, groups = [f.mask for f in frames], [f.group for f in frames]

    results = {}
    for size in range(1, args.largest + 1):
        for combo in itertools.combinations(probs, size):
            mean = [np.mean(stack, axis=0) for stack in zip(*(probs[n] for n in combo))]
            scores = tuned_scores(mean, truths, THRESHOLDS)
            peak = tune_peak(mean, truths, scores["threshold"], groups)
            row = {"pixel_iou": scores["pixel_iou"], "object_f1": scores["object_f1"],
                   "threshold": scores["threshold"], "min_peak": peak["min_peak"],
                   "peak_object_f1": peak["with"]["object_f1"], "peak_pixel_iou": peak["with"]["pixel_iou"],
                   "peak_held_out_object_f1": peak["held_out"]["object_f1"],
                   "object_f1_by_floor": {k: v["object_f1"] for k, v in peak["by_floor"].items()}}
            results[" + ".join(combo)] = row
            print(f"{' + '.join(combo)}: IoU {row['pixel_iou']:.3f}, object F1 {row['object_f1']:.3f}, "
                  f"with floor {row['min_peak']:.2f} {row['peak_object_f1']:.3f} "
                  f"(held out {row['peak_held_out_object_f1']:.3f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "means of segmenter checkpoints' probabilities on their county-held-out validation frames "
                "(fp32, frames whole); threshold tuned for pooled pixel IoU, then the peak floor for object F1",
        "command": "python scripts/ensemble_search.py " + " ".join(args.models) + f" --data {args.data}",
        "results": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
