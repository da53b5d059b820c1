"""Where a segmenter's pixel IoU is lost: at the outlines of crowns it finds, or in whole false patches and
whole missed crowns, on its validation counties beside (a sample of) its training frames.

    python scripts/error_breakdown.py models/checkpoints/deadtree-rgbn-0.2.0.pt --data ../shared/data/usa_deadtree \
        --out docs/results/error_breakdown.json

Frames are predicted whole in fp32 at the checkpoint's own threshold (tuned on validation during training). If
the outline errors are as large on training frames as on validation ones, they are the masks' own precision;
what the unseen counties add beyond that is the part that generalisation would have to win back.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from deadtree.metrics import ErrorBreakdown
from deadtree.nets.segmenter import load_segmenter
from deadtree.training.frames import held_out, load_frames
from deadtree.training.segmenter_trainer import frame_probabilities


def breakdown(model, frames, threshold: float) -> dict:
    pooled, by_state = ErrorBreakdown(), defaultdict(ErrorBreakdown)
    for frame in frames:
        pred = frame_probabilities(model, frame) >= threshold
        pooled.add(pred, frame.mask)
        by_state[frame.group[:2]].add(pred, frame.mask)
    return {"frames": len(frames), "pooled": pooled.shares(),
            "by_state": {state: counts.shares() for state, counts in sorted(by_state.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--train-every", type=int, default=4, help="score every Nth training frame (0: none)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model, ckpt = load_segmenter(args.checkpoint)
    threshold = float(ckpt["state"]["best"]["threshold"])
    groups = set(ckpt["split"]["validation_groups"])
    frames = load_frames(args.data, tuple(ckpt["config"]["bands"]))
    parts = {"validation": held_out(frames, groups)}
    if args.train_every:
        parts["training"] = [f for f in frames if f.group not in groups][:: args.train_every]
    results = {name: breakdown(model, part, threshold) for name, part in parts.items()}
    for name, found in results.items():
        shares = found["pooled"]
        print(f"{name} ({found['frames']} frames): IoU {shares['correct']:.3f}; of the union, outline errors "
              f"{shares['extra_at_found']:.3f} too much + {shares['short_at_found']:.3f} too little, "
              f"false patches {shares['false_patches']:.3f}, missed crowns {shares['missed_crowns']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "shares of the union of predicted and true dead-tree pixels (deadtree.metrics.ErrorBreakdown); "
                "frames predicted whole in fp32 at the checkpoint's threshold",
        "command": f"python scripts/error_breakdown.py {args.checkpoint} --data {args.data} "
                   f"--train-every {args.train_every} --out {args.out}",
        "checkpoint": str(args.checkpoint), "threshold": threshold, "results": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
