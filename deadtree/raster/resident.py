"""Scenes read at full resolution on every core: held decoded when small, swept once for their statistics when not.

The statistics that scale a scene come from a decimated read of all of it, and the model cannot start before
they are known. GDAL decodes the blocks of a decimated read one at a time on one core: 0.23-0.26 s for a
deflate-compressed 4096 x 4096 x 4 scene, and 20.8 s for a 20000 x 20000 x 4 one, with the second core idle
meanwhile. A full-resolution read decodes its blocks on all cores (GDAL_NUM_THREADS): 0.14-0.17 s for the
whole 4096 x 4096 scene on the 2-core host. So a scene that a run may hold (deadtree.raster.read_policy) is read whole that
way, and its tiles are then copied out of memory instead of going through GDAL's block cache; a larger one is
read that way in bands of block rows, kept only long enough to pick the decimated pixels from them. Either
way the decimated pixels are the ones GDAL's nearest-neighbour decimation picks (tested against it).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from deadtree.raster import read_policy
from deadtree.raster.scene import Scene, unreadable

# The band of block rows decoded at a time when sweeping a larger scene: memory for one band, and enough blocks
# in it to keep every core decoding.
SWEEP_BYTES = 64 * 1024 * 1024


@dataclass
class ScenePixels:
    """A scene's read bands and its alpha band, decoded: the whole scene (read_resident) or its decimated
    pixels (swept_decimation)."""

    pixels: np.ndarray  # (bands, rows, cols): the read bands, in the order asked for
    alpha: np.ndarray | None  # (rows, cols) of the alpha band, where the scene has one


def read_resident(scene: Scene, indexes: list[int], threads: int) -> ScenePixels | None:
    """The whole scene decoded, or None where it is too large to hold or has an internal mask (read window by
    window, as GDAL resolves it)."""
    planes = _planes(scene, indexes)
    if not read_policy.may_hold(scene, indexes, resampled=False):
        return None
    with _decoding_on(scene, threads) as threaded:
        decoded = threaded.read(planes)
    alpha = decoded[-1] if scene.alpha_index else None
    return ScenePixels(decoded[:len(indexes)], alpha)


def _planes(scene: Scene, indexes: list[int]) -> list[int]:
    return [*indexes, *([scene.alpha_index] if scene.alpha_index else [])]


def nearest_decimation(pixels: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(..., rows, cols) picked from (..., height, width) as GDAL's nearest-neighbour RasterIO picks them."""
    height, width = pixels.shape[-2:]
    row_picks, col_picks = _picks(height, rows), _picks(width, cols)
    every_row, every_col = _as_step(row_picks), _as_step(col_picks)
    if every_row and every_col:
        # Evenly spaced picks (a side a whole multiple of the output's): one strided copy, no 16 MB gather
        # between the two takes below to fault in (3 against 6-60 ms, 4 x 4096 x 4096 -> 1024).
        return np.ascontiguousarray(pixels[..., every_row, every_col])
    # rows, then columns of the rows taken: 5.5 against 18 ms for one gather of both (4 x 4096 x 4096 -> 1024)
    return np.take(np.take(pixels, row_picks, axis=-2), col_picks, axis=-1)


def _as_step(picks: np.ndarray) -> slice | None:
    """`picks` as a slice where they are evenly spaced, else None."""
    if len(picks) < 2:
        return slice(int(picks[0]), int(picks[0]) + 1) if len(picks) else None
    step = int(picks[1] - picks[0])
    if step < 1 or not np.array_equal(np.diff(picks), np.full(len(picks) - 1, step)):
        return None
    return slice(int(picks[0]), int(picks[-1]) + 1, step)


def swept_decimation(scene: Scene, indexes: list[int], rows: int, cols: int, threads: int) -> ScenePixels:
    """The decimated pixels (and alpha) of a scene too large to hold, from one full-resolution pass over it in
    pieces of whole blocks decoded on every core: bands of block rows, cut across too where one band of the
    full width would pass SWEEP_BYTES. Pieces holding no picked pixel are not read."""
    ds = scene.dataset
    planes = _planes(scene, indexes)
    picked_rows, picked_cols = _picks(ds.height, rows), _picks(ds.width, cols)
    block_rows, block_cols = (max(1, side) for side in ds.block_shapes[0])
    pixel_bytes = len(planes) * np.dtype(ds.dtypes[0]).itemsize
    band = max(block_rows, SWEEP_BYTES // (ds.width * pixel_bytes) // block_rows * block_rows)
    span = max(block_cols, SWEEP_BYTES // (band * pixel_bytes) // block_cols * block_cols)
    out = np.empty((len(planes), rows, cols), dtype=ds.dtypes[0])
    buffer = np.empty(len(planes) * min(band, ds.height) * min(span, ds.width), dtype=ds.dtypes[0])
    with _decoding_on(scene, threads) as threaded:
        for top in range(0, ds.height, band):
            in_rows = _within(picked_rows, top, band)
            for left in range(0, ds.width, span):
                in_cols = _within(picked_cols, left, span)
                if len(in_rows) == 0 or len(in_cols) == 0:
                    continue
                # from the first to the last picked pixel of the piece: blocks beyond them are not decoded
                r0, r1 = picked_rows[in_rows[0]], picked_rows[in_rows[-1]] + 1
                c0, c1 = picked_cols[in_cols[0]], picked_cols[in_cols[-1]] + 1
                part = buffer[:len(planes) * (r1 - r0) * (c1 - c0)].reshape(len(planes), r1 - r0, c1 - c0)
                threaded.read(planes, window=Window(c0, r0, c1 - c0, r1 - r0), out=part)
                taken = np.take(part[:, picked_rows[in_rows] - r0], picked_cols[in_cols] - c0, axis=-1)
                out[:, in_rows[0]:in_rows[-1] + 1, in_cols[0]:in_cols[-1] + 1] = taken
    return ScenePixels(out[:len(indexes)], out[-1] if scene.alpha_index else None)


@contextmanager
def _decoding_on(scene: Scene, threads: int):
    """A handle of the scene's own whose blocks GDAL decodes on `threads` cores (GDAL reads the option when a
    dataset is opened); a read that fails is the user's damaged file, reported as such."""
    try:
        with rasterio.Env(GDAL_NUM_THREADS=str(max(1, threads))), rasterio.open(scene.path) as handle:
            yield handle
    except RasterioError as exc:
        raise unreadable(scene.path, exc) from exc


def _within(picks: np.ndarray, start: int, size: int) -> np.ndarray:
    """Positions of the picks in [start, start + size): consecutive, since picks increase."""
    return np.flatnonzero((picks >= start) & (picks < start + size))


def _picks(size: int, count: int) -> np.ndarray:
    """The source index under each of `count` output cells' centres along an axis of `size` pixels."""
    return np.floor((np.arange(count) + 0.5) * (size / count)).astype(np.intp)
