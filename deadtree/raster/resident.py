"""A scene small enough to hold decoded: read once on every core, then cut into tiles from memory.

The statistics that scale a scene come from a decimated read of all of it, and the model cannot start before
they are known. GDAL decodes the blocks of a decimated read one at a time on one core: 0.23-0.26 s for a
deflate-compressed 4096 x 4096 x 4 scene, with the second core idle in the meantime. A full-resolution read of
the whole scene decodes its blocks on all cores (GDAL_NUM_THREADS) in 0.14-0.17 s on the 2-core host. So a
scene whose pixels fit in RESIDENT_BYTES is read that way; the decimated pixels are picked from it where GDAL's
nearest-neighbour decimation picks them, and tiles are copied out of it instead of going through GDAL's block
cache. Larger scenes stream as before (deadtree.raster.reader).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from deadtree.raster.scene import Scene, unreadable

# The scene's pixels held decoded; under the 25-megapixel scene of the memory benchmark (100 MB for four
# bytes a pixel), and a 7000 x 7000 x 3 scene (147 MB).
RESIDENT_BYTES = 160 * 1024 * 1024


@dataclass
class ResidentScene:
    pixels: np.ndarray  # (bands, rows, cols): the read bands, in the order asked for
    alpha: np.ndarray | None  # (rows, cols) of the alpha band, where the scene has one


def read_resident(scene: Scene, indexes: list[int], threads: int) -> ResidentScene | None:
    """The whole scene decoded, or None where it is too large to hold or has an internal mask (read window by
    window, as GDAL resolves it)."""
    ds = scene.dataset
    planes = [*indexes, *([scene.alpha_index] if scene.alpha_index else [])]
    size = ds.width * ds.height * len(planes) * np.dtype(ds.dtypes[0]).itemsize
    if scene.dataset_mask or size > RESIDENT_BYTES:
        return None
    try:
        # GDAL reads the option when a dataset is opened: a handle of its own, for this one read
        with rasterio.Env(GDAL_NUM_THREADS=str(max(1, threads))), rasterio.open(scene.path) as threaded:
            decoded = threaded.read(planes)
    except RasterioError as exc:
        raise unreadable(scene.path, exc) from exc
    alpha = decoded[-1] if scene.alpha_index else None
    return ResidentScene(decoded[:len(indexes)], alpha)


def nearest_decimation(pixels: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(..., rows, cols) picked from (..., height, width) as GDAL's nearest-neighbour RasterIO picks them: the
    source pixel under each output pixel's centre."""
    height, width = pixels.shape[-2:]
    picked_rows = np.floor((np.arange(rows) + 0.5) * (height / rows)).astype(np.intp)
    picked_cols = np.floor((np.arange(cols) + 0.5) * (width / cols)).astype(np.intp)
    # rows, then columns of the rows taken: 5.5 against 18 ms for one gather of both (4 x 4096 x 4096 -> 1024)
    return np.take(np.take(pixels, picked_rows, axis=-2), picked_cols, axis=-1)
