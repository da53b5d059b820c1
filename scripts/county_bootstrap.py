"""How much the pooled validation IoU depends on which counties were held out: a bootstrap over counties.

    python scripts/county_bootstrap.py --checkpoint models/checkpoints/deadtree-rgbn-0.2.0.pt \
        --data ../shared/data/usa_deadtree --out docs/results/county_bootstrap.json

The validation split holds out 16 whole counties, and two Missouri counties alone hold 35 of its 80 frames.
Each bootstrap sample draws that many counties with replacement (and, separately, within each state, as the
split itself picks them) and pools the intersection and union of their frames at the checkpoint's own
threshold. The spread says how far another split of the same kind could move the figure, for the same model.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from deadtree.nets.segmenter import load_segmenter
from deadtree.training.frames import held_out, load_frames
from deadtree.training.segmenter_trainer import frame_probabilities


def county_counts(checkpoint: str, data: str) -> tuple[dict[str, list[int]], float]:
    """Per validation county: [intersection, union] of dead-tree pixels at the checkpoint's threshold."""
    model, ckpt = load_segmenter(checkpoint)
    threshold = float(ckpt["state"]["best"]["threshold"])
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    frames = held_out(load_frames(data, tuple(ckpt["config"]["bands"])), ckpt["split"]["validation_groups"])
    for frame in tqdm(frames, desc="validation frames", unit="frame"):
        predicted = frame_probabilities(model, frame) >= threshold
        counts[frame.group][0] += int((predicted & frame.mask).sum())
        counts[frame.group][1] += int((predicted | frame.mask).sum())
    return dict(counts), threshold


def bootstrap(counts: dict[str, list[int]], samples: int, by_state: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pools = defaultdict(list)
    for county in sorted(counts):
        pools[county[:2] if by_state else "all"].append(county)
    table = np.array([counts[c] for pool in pools.values() for c in pool], dtype=np.float64)
    offsets = np.cumsum([0] + [len(p) for p in pools.values()])
    ious = np.empty(samples)
    for k in range(samples):
        picked = np.concatenate([rng.integers(lo, hi, hi - lo) for lo, hi in zip(offsets[:-1], offsets[1:])])
        inter, union = table[picked].sum(axis=0)
        ious[k] = inter / union
    return ious


def summary(ious: np.ndarray) -> dict:
    low, median, high = np.quantile(ious, [0.05, 0.5, 0.95])
    return {"median": round(float(median), 3), "p05": round(float(low), 3), "p95": round(float(high), 3),
            "share_at_or_above_0.48": round(float((ious >= 0.48).mean()), 4),
            "share_at_or_above_0.53": round(float((ious >= 0.53).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)

    counts, threshold = county_counts(args.checkpoint, args.data)
    inter, union = np.array(list(counts.values())).sum(axis=0)
    result = {
        "checkpoint": args.checkpoint, "threshold": threshold, "counties": len(counts),
        "pooled_iou": round(float(inter / union), 3),
        "county_iou": {c: round(i / u, 3) for c, (i, u) in sorted(counts.items())},
        "bootstrap_all_counties": summary(bootstrap(counts, args.samples, by_state=False)),
        "bootstrap_within_states": summary(bootstrap(counts, args.samples, by_state=True)),
        "samples": args.samples,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
