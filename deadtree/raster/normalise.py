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

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Scale a (bands, rows, cols) array to float32."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        span = np.maximum(np.asarray(self.high, dtype=np.float32)[:, None, None] - low, 1e-6)
        gain = (np.float32(1) / span).astype(np.float32)
        # Two passes over the pixels, written into one new array: value x gain - low x gain (a multiply instead
        # of a division, the cast folded into it) instead of a cast, a subtraction and a division. A new array
        # the size of a tile is fresh memory to fault in (deadtree/heap.py), so nothing else is allocated.
        out = np.multiply(pixels, gain, dtype=np.float32)
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
    lows, highs = [], []
    for band in pixels:
        values = band[valid] if valid is not None else band.ravel()
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if values.size == 0:
            lows.append(0.0)
            highs.append(1.0)
            continue
        lo, hi = np.percentile(values, [low_pct, high_pct])
        lows.append(float(lo))
        highs.append(float(hi) if hi > lo else float(lo) + 1.0)
    return BandStretch(tuple(lows), tuple(highs))
