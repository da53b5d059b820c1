"""Pixel and object-level scores for binary dead-tree masks.

Object matching rule (documented for users): objects are 8-connected components. A ground-truth object counts
as found when a predicted component overlaps it at IoU >= ``iou_threshold`` (0.25 by default); matches are one
to one, taken greedily in order of decreasing IoU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class PixelCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        pred = pred.astype(bool)
        truth = truth.astype(bool)
        if valid is not None:
            pred = pred & valid
            truth = truth & valid
        self.tp += int(np.count_nonzero(pred & truth))
        self.fp += int(np.count_nonzero(pred & ~truth))
        self.fn += int(np.count_nonzero(~pred & truth))

    def scores(self) -> dict[str, float]:
        return {
            "iou": _ratio(self.tp, self.tp + self.fp + self.fn),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, self.tp + self.fn),
            "f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        }


def probability_agreement(probs: list[np.ndarray], reference: list[np.ndarray], threshold: float) -> dict:
    """How far one precision or device strays from a reference: the largest probability difference over all
    frames and the pooled IoU of the two masks at `threshold` (1.0 where both are empty: they agree)."""
    counts = PixelCounts()
    for a, b in zip(probs, reference):
        counts.add(a >= threshold, b >= threshold)
    agree = counts.scores()["iou"] if counts.tp + counts.fp + counts.fn else 1.0
    return {"max_abs_probability_difference": max(float(np.abs(a - b).max()) for a, b in zip(probs, reference)),
            "mask_iou": agree}


@dataclass
class ObjectCounts:
    matched: int = 0
    predicted: int = 0
    truth: int = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.25) -> None:
        from scipy import ndimage  # imported where used: scipy is a quarter second of every command's start

        pred_labels, n_pred = ndimage.label(pred.astype(bool), structure=EIGHT_CONNECTED)
        truth_labels, n_truth = ndimage.label(truth.astype(bool), structure=EIGHT_CONNECTED)
        self.predicted += n_pred
        self.truth += n_truth
        self.matched += match_objects(pred_labels, n_pred, truth_labels, n_truth, iou_threshold)

    def scores(self) -> dict[str, float]:
        precision = _ratio(self.matched, self.predicted)
        recall = _ratio(self.matched, self.truth)
        return {
            "object_precision": precision,
            "object_recall": recall,
            "object_f1": _ratio(2 * self.matched, self.predicted + self.truth),
        }


@dataclass
class Scores:
    """Pooled pixel counts and object counts over many images."""

    pixels: PixelCounts = field(default_factory=PixelCounts)
    objects: ObjectCounts = field(default_factory=ObjectCounts)

    def add(self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.pixels.add(pred, truth, valid)
        if valid is not None:
            pred = pred.astype(bool) & valid
            truth = truth.astype(bool) & valid
        self.objects.add(pred, truth)

    def absorb(self, other: "Scores") -> None:
        """Pool another set of counts into these."""
        for mine, theirs in ((self.pixels, other.pixels), (self.objects, other.objects)):
            for name, value in asdict(theirs).items():
                setattr(mine, name, getattr(mine, name) + value)

    def summary(self) -> dict[str, float]:
        out = {f"pixel_{k}": v for k, v in self.pixels.scores().items()}
        out.update(self.objects.scores())
        out.update({f"count_{k}": v for k, v in asdict(self.objects).items()})
        return out


@dataclass
class ErrorBreakdown:
    """Where the pixels of the union (prediction or truth) go: correct, or wrong at the outline of a crown that
    was found, or wrong because a whole patch is a false alarm or a whole crown was missed. A patch or crown
    counts as found when any of its pixels (8-connected) overlaps the other mask."""

    correct: int = 0
    extra_at_found: int = 0  # predicted, not true, in a predicted patch that overlaps a true crown
    false_patches: int = 0  # predicted, in a patch that overlaps no true crown
    short_at_found: int = 0  # true, not predicted, in a crown that some prediction overlaps
    missed_crowns: int = 0  # true, in a crown that no prediction overlaps

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        pred, truth = pred.astype(bool), truth.astype(bool)
        both = pred & truth
        pred_found = _overlapping(pred, both)
        truth_found = _overlapping(truth, both)
        self.correct += int(np.count_nonzero(both))
        self.extra_at_found += int(np.count_nonzero(pred_found & ~truth))
        self.false_patches += int(np.count_nonzero(pred & ~pred_found))
        self.short_at_found += int(np.count_nonzero(truth_found & ~pred))
        self.missed_crowns += int(np.count_nonzero(truth & ~truth_found))

    def shares(self) -> dict[str, float]:
        """Each count as a share of the union; `correct` is then the pooled pixel IoU."""
        union = sum(asdict(self).values())
        return {name: _ratio(count, union) for name, count in asdict(self).items()}


def _overlapping(mask: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """The pixels of `mask`'s 8-connected components that contain a pixel of `overlap` (a part of `mask`, so
    the background's label 0 is never marked)."""
    from scipy import ndimage  # imported where used: scipy is a quarter second of every command's start

    labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    touched = np.zeros(n + 1, dtype=bool)
    touched[labels[overlap]] = True
    return touched[labels]


def match_objects(pred_labels, n_pred, truth_labels, n_truth, iou_threshold: float) -> int:
    """Number of one-to-one matches between labelled components at IoU >= iou_threshold."""
    if n_pred == 0 or n_truth == 0:
        return 0
    both = (pred_labels > 0) & (truth_labels > 0)
    pairs = pred_labels[both].astype(np.int64) * (n_truth + 1) + truth_labels[both]
    pair_ids, inter = np.unique(pairs, return_counts=True)
    p_idx, t_idx = np.divmod(pair_ids, n_truth + 1)
    pred_area = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    truth_area = np.bincount(truth_labels.ravel(), minlength=n_truth + 1)
    iou = inter / (pred_area[p_idx] + truth_area[t_idx] - inter)
    order = np.argsort(-iou, kind="stable")
    used_p, used_t, matched = set(), set(), 0
    for k in order:
        if iou[k] < iou_threshold:
            break
        if p_idx[k] in used_p or t_idx[k] in used_t:
            continue
        used_p.add(p_idx[k])
        used_t.add(t_idx[k])
        matched += 1
    return matched


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def tuned_scores(probabilities: list[np.ndarray], truths: list[np.ndarray],
                 thresholds: tuple[float, ...]) -> dict[str, float]:
    """Pooled scores at the threshold (among `thresholds`) with the best pooled pixel IoU."""
    best_t, best_iou = thresholds[0], -1.0
    for t in thresholds:
        counts = PixelCounts()
        for p, truth in zip(probabilities, truths):
            counts.add(p >= t, truth)
        iou = counts.scores()["iou"]
        if iou > best_iou:
            best_t, best_iou = t, iou
    scores = Scores()
    for p, truth in zip(probabilities, truths):
        scores.add(p >= best_t, truth)
    out = scores.summary()
    out["threshold"] = float(best_t)
    return out
