"""Value scaling shared by training and inference.

Models read each band linearly stretched so that its low and high percentiles map to 0 and 1. The statistics
come from the whole scene (a decimated read at inference, the whole frame in training), never from one tile:
a per-tile stretch makes seams. Values are not clipped at 1, because dead crowns are among the brightest
pixels and clipping would flatten exactly what the model must see; a wide safety clip keeps outliers sane.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_LOW_PCT = 1.0
DEFAULT_HIGH_PCT = 99.0
SAFETY_CLIP = (-1.0, 2.0)


@dataclass(frozen=True)
class BandStretch:
    """Per-band offsets and spans: scaled = (value - low) / (high - low)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Scale a (bands, rows, cols) array to float32, into `out` (float32, same shape) where given."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        span = np.maximum(np.asarray(self.high, dtype=np.float32)[:, None, None] - low, 1e-6)
        gain = (np.float32(1) / span).astype(np.float32)
        # Two passes over the pixels, written into one new array: value x gain - low x gain (a multiply instead
        # of a division, the cast folded into it) instead of a cast, a subtraction and a division. Nothing else
        # is allocated: a new array the size of a tile is fresh memory to fault in (deadtree/buffers.py).
        out = np.multiply(pixels, gain, out=out, dtype=np.float32)
        out -= low * gain
        if _may_leave_clip(pixels.dtype, low, gain):
            np.clip(out, *SAFETY_CLIP, out=out)
        return out

    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high)}


def _may_leave_clip(dtype: np.dtype, low: np.ndarray, gain: np.ndarray) -> bool:
    """Whether any value of `dtype` could scale outside SAFETY_CLIP. Integer types have a known range, and for
    8-bit imagery under any sane stretch it maps inside the clip: the clip's pass can be skipped."""
    if dtype.kind not in "ui":
        return True
    info = np.iinfo(dtype)
    ends = (np.array([info.min, info.max], dtype=np.float64)[:, None] - low.ravel()) * gain.ravel()
    return bool(ends.min() < SAFETY_CLIP[0] or ends.max() > SAFETY_CLIP[1])


def band_percentiles(
    pixels: np.ndarray,
    valid: np.ndarray | None = None,
    low_pct: float = DEFAULT_LOW_PCT,
    high_pct: float = DEFAULT_HIGH_PCT,
) -> BandStretch:
    """Percentile stretch of a (bands, rows, cols) array, counting only valid pixels."""
    return _stretch(_band_quantiles(pixels, valid, (low_pct, high_pct)))


def stretch_and_medians(pixels: np.ndarray, valid: np.ndarray | None, low_pct: float = DEFAULT_LOW_PCT,
                        high_pct: float = DEFAULT_HIGH_PCT) -> tuple[BandStretch, np.ndarray]:
    """band_percentiles and each band's median (0 for a band without valid pixels, float64), from one pass
    over each band's valid values."""
    found = _band_quantiles(pixels, valid, (low_pct, high_pct, 50.0))
    return _stretch(found), np.array([0.0 if q is None else q[2] for q in found])


def _band_quantiles(pixels: np.ndarray, valid: np.ndarray | None, percents: tuple[float, ...]) -> list:
    return [_percentiles(_valid_values(band, valid), percents) for band in pixels]


def _stretch(quantiles: list) -> BandStretch:
    """From each band's (low, high, ...) percentiles, or None for a band without valid pixels (0..1)."""
    lows, highs = [], []
    for found in quantiles:
        if found is None:
            lows.append(0.0)
            highs.append(1.0)
            continue
        lo, hi = float(found[0]), float(found[1])
        lows.append(lo)
        highs.append(hi if hi > lo else lo + 1.0)
    return BandStretch(tuple(lows), tuple(highs))


def _valid_values(band: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    values = band.ravel() if valid is None or valid.all() else band[valid]
    return values[np.isfinite(values)] if values.dtype.kind == "f" else values


def _percentiles(values: np.ndarray, percents: tuple[float, ...]) -> np.ndarray | None:
    """np.percentile's (linear) percentiles of a 1-D array, or None when it is empty. 8- and 16-bit values are
    counted instead of sorted: a histogram gives the same order statistics 5-10x faster, and these statistics
    are read before the first tile can start."""
    if values.size == 0:
        return None
    if values.dtype.kind != "u" or values.dtype.itemsize > 2:
        return np.percentile(values, percents)
    below = np.cumsum(np.bincount(values))  # below[v]: how many values are <= v
    position = (values.size - 1) * np.asarray(percents, dtype=np.float64) / 100
    lower = np.floor(position)
    low_value = np.searchsorted(below, lower, side="right").astype(np.float64)
    high_value = np.searchsorted(below, np.ceil(position), side="right").astype(np.float64)
    return low_value + (high_value - low_value) * (position - lower)
