"""The peak filter: keep a predicted patch only where its highest probability reaches a floor.

Most predicted patches that match no true crown on the county-held-out validation split are faint: their
pixels pass the pixel threshold but none of them is confident. Dropping patches whose peak stays below a
floor removes them while leaving pixel IoU nearly unchanged (the faint patches are small), which is why the
floor is tuned for object F1 after the pixel threshold is tuned for pixel IoU.

Patches here are 4-connected, as the polygons `segment` writes, and patches smaller than the minimum area are
dropped first, as `segment` does; the scores count objects 8-connected (deadtree.metrics).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from deadtree.components import FOUR_CONNECTED, labelled_maxima
from deadtree.metrics import Scores

# Floors from just above the lowest pixel threshold the tuning can choose (0.2): a network distilled from
# another's logits sets its threshold at 0.35-0.4, and its faint patches peak below 0.6. A floor at or below
# the threshold keeps every patch, like 0, which wins such ties by coming first.
PEAKS = (0.0, *(round(0.25 + 0.05 * k, 2) for k in range(15)))
DEFAULT_MIN_AREA_PX = 1.0 / (0.6 * 0.6)  # segment's default --min-area (1 m²) at the models' 0.6 m


def _patches(probabilities: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-connected patches at or above the threshold: labels, each patch's peak and its pixel count."""
    from scipy import ndimage  # imported where used: scipy is a quarter second of every command's start

    labels, n = ndimage.label(probabilities >= threshold, structure=FOUR_CONNECTED)
    peaks = np.concatenate([[-np.inf], labelled_maxima(probabilities, labels, n)])
    return labels, peaks, np.bincount(labels.ravel(), minlength=n + 1)


def _kept(labels: np.ndarray, peaks: np.ndarray, areas: np.ndarray, min_peak: float,
          min_area_px: float) -> np.ndarray:
    """The mask of the patches that reach the floor and the minimum area (label 0 is the background)."""
    keep = (peaks >= min_peak) & (areas >= min_area_px)
    keep[0] = False
    return keep[labels]


# Averaging smooths the peaks, the more so the more members. On the validation counties the best floor of a
# mean of k shipped models was the members' lowest minus 0.05 for each member after the first, in all three
# ensembles measured (RGB+NIR with RGB: 0.80; with EfficientNet-B0: 0.80; all three: 0.75; docs/models.md).
ENSEMBLE_FLOOR_STEP = 0.05


def ensemble_floor(floors: Sequence[float]) -> float:
    """The peak floor for the mean of models with these floors (one model: its own)."""
    return max(0.0, round(min(floors) - ENSEMBLE_FLOOR_STEP * (len(floors) - 1), 4))


def peak_filtered(probabilities: np.ndarray, threshold: float, min_peak: float,
                  min_area_px: float = 0.0) -> np.ndarray:
    """The dead-tree mask with faint and tiny patches removed."""
    return _kept(*_patches(probabilities, threshold), min_peak, min_area_px)


def peak_scores(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray], threshold: float,
                peaks: Sequence[float] = PEAKS, min_area_px: float = DEFAULT_MIN_AREA_PX) -> list[list[Scores]]:
    """Scores of every frame (inner list) at every floor (outer list): frames stay apart so that a floor can be
    chosen on some frames and scored on others."""
    table = [[] for _ in peaks]
    for probs, truth in zip(probabilities, truths):
        labels, patch_peaks, areas = _patches(probs, threshold)
        for row, floor in zip(table, peaks):
            scores = Scores()
            scores.add(_kept(labels, patch_peaks, areas, floor, min_area_px), truth)
            row.append(scores)
    return table


def pooled(frames: Sequence[Scores]) -> dict[str, float]:
    total = Scores()
    for scores in frames:
        total.absorb(scores)
    return total.summary()


def best_peak(table: list[list[Scores]], peaks: Sequence[float], frames: Sequence[int] | None = None) -> float:
    """The floor with the best pooled object F1 over the given frames (all by default); ties go to the lowest."""
    chosen = range(len(table[0])) if frames is None else frames
    f1 = [pooled([row[k] for k in chosen])["object_f1"] for row in table]
    return float(peaks[int(np.argmax(f1))])


def held_out_scores(table: list[list[Scores]], peaks: Sequence[float], groups: Sequence[str]) -> dict:
    """An honest estimate of tuning the floor: for each group (county), the floor is chosen on the other groups'
    frames and applied to this group's; the scores are pooled over all frames so scored."""
    groups = list(groups)
    scored, chosen = [], {}
    for group in sorted(set(groups)):
        others = [k for k, g in enumerate(groups) if g != group]
        floor = best_peak(table, peaks, others)
        chosen[group] = floor
        scored.extend(table[list(peaks).index(floor)][k] for k, g in enumerate(groups) if g == group)
    return {**pooled(scored), "floors_chosen": chosen}


def tune_peak(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray], threshold: float,
              groups: Sequence[str] | None = None, peaks: Sequence[float] = PEAKS,
              min_area_px: float = DEFAULT_MIN_AREA_PX) -> dict:
    """The floor tuned on these frames, the scores there with and without it, and (given each frame's group)
    the held-out estimate."""
    table = peak_scores(probabilities, truths, threshold, peaks, min_area_px)
    floor = best_peak(table, peaks)
    out = {
        "min_peak": floor,
        "threshold": float(threshold),
        "min_area_px": float(min_area_px),
        "without": pooled(table[list(peaks).index(0.0)]) if 0.0 in peaks else None,
        "with": pooled(table[list(peaks).index(floor)]),
    }
    if groups is not None:
        out["held_out"] = held_out_scores(table, peaks, groups)
    out["by_floor"] = {str(p): pooled(row) for p, row in zip(peaks, table)}
    return out


def peak_record(tuned: dict) -> dict:
    """tune_peak's result as flat fields of a validation record (checkpoint state, model metadata, card)."""
    record = {"min_peak": tuned["min_peak"]}
    for key in ("pixel_iou", "object_precision", "object_recall", "object_f1"):
        record[f"peak_{key}"] = tuned["with"][key]
        if tuned["without"] is not None:
            record[f"min_area_{key}"] = tuned["without"][key]
        if "held_out" in tuned:
            record[f"peak_held_out_{key}"] = tuned["held_out"][key]
    return record
