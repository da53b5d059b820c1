"""How a run reads its scene, decided once: held decoded in memory, or streamed through GDAL's block cache.

A scene whose read bands fit in HOLD_WHOLE_BYTES decoded is read whole on every core (deadtree.raster.resident)
and its tiles are copied out of memory; the decimated pixels of its statistics are picked from it. A scene that
cannot be held that way (on a resampled grid, or with an internal mask) but fits in the same budget keeps all
its blocks in GDAL's cache from the statistics' read on, so each block is decoded once per run instead of about
2.6 times. A larger scene streams: its statistics come from one sweep of block rows, and its tiles read through
a cache of the blocks under two tiles (memory independent of the scene's size).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deadtree.raster.scene import Scene

# Under the 25-megapixel scene of the memory benchmark (100 MB at four bytes a pixel), and a 7000 x 7000 x 3
# scene (147 MB).
HOLD_WHOLE_BYTES = 160 * 1024 * 1024
# GDAL's default block cache (5% of RAM) would dominate the memory of a streamed run. rasterio hands an
# integer to GDAL as bytes: 256 here would mean 256 bytes, and re-decoded blocks for every row.
GDAL_CACHE_BYTES = 256 * 1024 * 1024
MIN_TILE_CACHE_BYTES = 16 * 1024 * 1024


def fits_in_memory(scene: Scene, indexes: list[int]) -> bool:
    """Whether the scene's `indexes` (and its alpha band) fit in HOLD_WHOLE_BYTES decoded."""
    ds = scene.dataset
    planes = len(indexes) + (1 if scene.alpha_index else 0)
    return ds.width * ds.height * planes * np.dtype(ds.dtypes[0]).itemsize <= HOLD_WHOLE_BYTES


def may_hold(scene: Scene, indexes: list[int], resampled: bool) -> bool:
    """Whether a run holds the scene decoded: it fits, is read on its own grid, and has no internal mask (read
    window by window, as GDAL resolves it)."""
    return not resampled and not scene.dataset_mask and fits_in_memory(scene, indexes)


@dataclass(frozen=True)
class ReadPolicy:
    hold: bool  # read the scene whole, decoded, and copy tiles out of it
    tile_cache_bytes: int  # GDAL's block cache while the tiles are read


def decide(scene: Scene, indexes: list[int], resampled: bool, tile_scene_px: float) -> ReadPolicy:
    hold = may_hold(scene, indexes, resampled)
    return ReadPolicy(hold, MIN_TILE_CACHE_BYTES if hold else tile_cache_bytes(scene, tile_scene_px))


def tile_cache_bytes(scene: Scene, tile_scene_px: float) -> int:
    """GDAL block cache for reading tiles left to right, top to bottom.

    A scene that fits in HOLD_WHOLE_BYTES keeps all its blocks. Beyond that, the file blocks under two tiles:
    neighbouring tiles in a row share blocks and find them in the cache; a row of tiles shares block rows with
    the next too, but keeping those would take a cache as wide as the scene, and memory would grow with the
    scene's width, so they are decoded again (in the read stage, beside the model)."""
    ds = scene.dataset
    block_rows, block_cols = max(ds.block_shapes)
    itemsize = np.dtype(ds.dtypes[0]).itemsize
    whole = int(scene.width * scene.height * ds.count * itemsize * 1.1)
    if whole <= HOLD_WHOLE_BYTES:
        return max(MIN_TILE_CACHE_BYTES, whole)
    rows = tile_scene_px + block_rows
    cols = min(scene.width, 2 * tile_scene_px + block_cols)
    needed = int(rows * cols * ds.count * itemsize * 1.1)
    return int(min(GDAL_CACHE_BYTES, max(MIN_TILE_CACHE_BYTES, needed)))
