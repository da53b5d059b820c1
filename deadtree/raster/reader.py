"""Reading model-grid windows of a scene: resampled pixels plus the validity mask, in one place."""
from __future__ import annotations

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from deadtree.errors import InputError
from deadtree.raster.grid import ModelGrid
from deadtree.machine import usable_cores
from deadtree.raster.read_policy import fits_in_memory
from deadtree.raster.resident import ScenePixels, nearest_decimation, swept_decimation
from deadtree.raster.scene import Scene, decimated_shape, read_decimated
from deadtree.raster.validity import (EdgeFillMap, all_valid, declared_invalid, fill_values, image_validity,
                                      may_declare_invalid, solid_fill)


def window_resampling(grid: ModelGrid) -> Resampling:
    """How scene pixels become model pixels.

    Onto a coarser model grid each model pixel is the mean of the scene pixels it covers, as a coarser sensor's
    pixel integrates the ground. Validation frames enlarged 2x (as a 0.3 m scene would be) and read back this
    way scored object F1 0.614 against 0.606 with bilinear sampling; enlarged 4x, 0.616 against 0.609
    (docs/pipeline.md). Onto a finer grid, bilinear."""
    if not grid.resampled:
        return Resampling.nearest
    return Resampling.average if grid.scale_x >= 1 and grid.scale_y >= 1 else Resampling.bilinear


class WindowReader:
    def __init__(self, scene: Scene, bands: tuple[str, ...], grid: ModelGrid, edge_fill: EdgeFillMap | None,
                 resident: ScenePixels | None = None):
        """`resident`: the scene's `bands` decoded (deadtree.raster.resident), to copy windows of a grid at the
        scene's own resolution from."""
        self.scene = scene
        self.resident = None if grid.resampled else resident
        self.bands = bands
        self.indexes = scene.indexes(bands)
        self.grid = grid
        self.edge_fill = edge_fill
        self.fill_values = fill_values(scene.dataset.dtypes[0])
        self.resampling = window_resampling(grid)

    @property
    def dtype(self) -> np.dtype:
        """What read() returns: the file's dtype (a GeoTIFF's bands share one)."""
        return np.dtype(self.scene.dataset.dtypes[0])

    def read(self, row: int, col: int, rows: int, cols: int,
             out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (bands, rows, cols) in the file's dtype and a validity mask, for a window inside the grid;
        the pixels go into `out` (of that shape and dtype, a view is fine) where given."""
        ds = self.scene.dataset
        window = self.grid.scene_window(row, col, rows, cols)
        shape = (rows, cols)
        try:
            if self.resident is not None:
                pixels, alpha = self._from_memory(row, col, rows, cols, out)
            else:
                sized = {"out_shape": (len(self.indexes), *shape)} if out is None else {"out": out}
                pixels = ds.read(self.indexes, window=window, resampling=self.resampling, **sized)
                alpha = ds.read(self.scene.alpha_index, window=window, out_shape=shape,
                                resampling=Resampling.nearest) if self.scene.alpha_index else None
            # None while nothing can be invalid (no nodata, alpha or mask, and integer pixels): most windows of
            # most scenes then share one all-True mask instead of two new arrays each
            invalid = declared_invalid(pixels, self.scene.nodata) \
                if may_declare_invalid(pixels.dtype, self.scene.nodata) else None
            if alpha is not None:
                invalid = _either(invalid, alpha == 0)
            if self.scene.dataset_mask:
                masked = ds.read_masks(1, window=window, out_shape=shape, resampling=Resampling.nearest) == 0
                invalid = _either(invalid, masked)
        except RasterioError as exc:
            raise InputError(f"{self.scene.path.name} cannot be read near row {int(window.row_off)}: "
                             f"the file is truncated or damaged ({str(exc).splitlines()[0]})") from exc
        if self.edge_fill is not None:
            scene_rows = (row + np.arange(rows) + 0.5) * self.grid.scale_y
            scene_cols = (col + np.arange(cols) + 0.5) * self.grid.scale_x
            # Most windows of most scenes touch no fill: they skip the per-pixel lookup and test.
            if self.edge_fill.touches(scene_rows, scene_cols):
                fill = solid_fill(pixels, self.fill_values) & self.edge_fill.lookup(scene_rows, scene_cols)
                invalid = _either(invalid, fill)
        return pixels, all_valid(shape) if invalid is None else ~invalid

    def _from_memory(self, row: int, col: int, rows: int, cols: int, out: np.ndarray | None):
        window = (slice(row, row + rows), slice(col, col + cols))
        pixels = self.resident.pixels[(slice(None), *window)]
        if out is None:
            pixels = pixels.copy()
        else:
            np.copyto(out, pixels)
            pixels = out
        alpha = None if self.resident.alpha is None else self.resident.alpha[window]
        return pixels, alpha


def _either(invalid: np.ndarray | None, more: np.ndarray) -> np.ndarray:
    if invalid is None:
        return more
    invalid |= more
    return invalid


def overview(scene: Scene, bands: tuple[str, ...], resident: ScenePixels | None = None,
             threads: int | None = None) -> tuple[np.ndarray, np.ndarray, EdgeFillMap]:
    """Decimated pixels, their validity, and the edge-connected fill map. GDAL reads them where the file has
    overviews (it reads a small one then), and where a scene small enough to hold is not held (its decoded
    blocks then stay in GDAL's cache for the tiles, deadtree.raster.read_policy). Otherwise they are
    picked from `resident` (the scene decoded), or from one sweep over a large scene on `threads` cores
    (default: all this process may use)."""
    ds = scene.dataset
    shape = decimated_shape(scene.width, scene.height)
    if ds.overviews(1) or (resident is None and fits_in_memory(scene, scene.indexes(bands))):
        pixels = read_decimated(scene, bands)
        alpha = ds.read(scene.alpha_index, out_shape=shape, resampling=Resampling.nearest) \
            if scene.alpha_index else None
    else:
        if resident is not None:
            picked = ScenePixels(nearest_decimation(resident.pixels, *shape),
                                   None if resident.alpha is None else nearest_decimation(resident.alpha, *shape))
        else:
            picked = swept_decimation(scene, scene.indexes(bands), *shape, threads or usable_cores())
        pixels, alpha = picked.pixels, picked.alpha
    invalid = declared_invalid(pixels, scene.nodata)
    if alpha is not None:
        invalid |= alpha == 0
    if scene.dataset_mask:
        invalid |= ds.read_masks(1, out_shape=shape, resampling=Resampling.nearest) == 0
    valid, connected = image_validity(pixels, invalid)
    return pixels, valid, EdgeFillMap(connected, scene.height, scene.width)
