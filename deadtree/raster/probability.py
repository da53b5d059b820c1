"""The probability band: uint8 on disk (probability x 254, 255 = nodata), written and read in row strips."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

PROB_SCALE = 254
NODATA = 255


def quantise(probs: np.ndarray, valid: np.ndarray | None = None, into: np.ndarray | None = None) -> np.ndarray:
    """Stored codes of probabilities, NODATA where not valid. With `into` (uint8, of probs' shape) the codes go
    there and `probs` (float) is the scratch space, overwritten: no new arrays (deadtree.buffers.Scratch)."""
    scaled = np.clip(probs, 0.0, 1.0, out=probs if into is not None else None)
    scaled *= PROB_SCALE
    np.rint(scaled, out=scaled)
    if into is None:
        q = scaled.astype(np.uint8)
    else:
        q = into
        np.copyto(q, scaled, casting="unsafe")
    if valid is not None and not valid.all():  # most strips are valid throughout: no pass and no temporary
        np.copyto(q, NODATA, where=~valid)
    return q


def threshold_code(threshold: float) -> int:
    """Smallest stored code that means probability >= threshold."""
    return int(math.ceil(threshold * PROB_SCALE - 1e-6))


def dead_mask(codes: np.ndarray, threshold: float, out: np.ndarray | None = None,
              scratch: np.ndarray | None = None) -> np.ndarray:
    """Codes at or above the threshold's, NODATA excluded; into `out` (bool) using `scratch` (uint8), both of
    codes' shape, where given."""
    t = threshold_code(threshold)
    if t > PROB_SCALE:  # a threshold above 1 (a model's metadata): nothing reaches it, nor would t fit a uint8
        none = np.empty(codes.shape, dtype=bool) if out is None else out
        none.fill(False)
        return none
    # One subtraction and one comparison: in uint8 arithmetic codes below t wrap round to NODATA - t + 1 and
    # above, and NODATA itself lands on NODATA - t, so `< NODATA - t` keeps exactly t..PROB_SCALE.
    shifted = np.subtract(codes, np.uint8(t), out=scratch, dtype=np.uint8)
    return np.less(shifted, np.uint8(NODATA - t), out=out)


class ProbabilityRaster:
    """A tiled, compressed uint8 GeoTIFF filled strip by strip from top to bottom."""

    def __init__(self, path: Path, width: int, height: int, crs, transform):
        self.path = Path(path)
        self.dataset = rasterio.open(
            self.path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
            crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=256, blockysize=256,
            compress="deflate", BIGTIFF="IF_SAFER",
        )
        self.dataset.scales = (1 / PROB_SCALE,)
        self.dataset.set_band_description(1, "dead tree probability (code / 254)")

    def write_rows(self, first_row: int, codes: np.ndarray) -> None:
        self.dataset.write(codes, 1, window=Window(0, first_row, codes.shape[1], codes.shape[0]))

    def close(self) -> None:
        self.dataset.close()


def read_strips(path: Path, strip_rows: int = 512):
    """Yield (first row, codes) strips of a probability raster."""
    with rasterio.open(path) as src:
        for row in range(0, src.height, strip_rows):
            rows = min(strip_rows, src.height - row)
            yield row, src.read(1, window=Window(0, row, src.width, rows))


def resample_strip(src, grid, row: int, rows: int) -> np.ndarray:
    """Scene rows [row, row+rows) of a model-grid probability raster, bilinear, as probabilities."""
    window = Window(0, row / grid.scale_y, grid.width, rows / grid.scale_y)
    codes = src.read(1, window=window, out_shape=(rows, grid.scene_width), resampling=Resampling.bilinear,
                     masked=False).astype(np.float32)
    return codes / PROB_SCALE
