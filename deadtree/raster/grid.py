"""The model grid: the scene's extent at the model's ground resolution, and the map between the two grids."""
from __future__ import annotations

from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

GSD_TOLERANCE = 0.05  # within 5% of the model's GSD, read the scene as it is
# Coarser than this many times the model's GSD, a 1-5 m crown is a pixel or less: upsampling cannot bring it back,
# and the grid (and the work) would grow with the square of the factor for nothing.
MAX_COARSER = 4.0


@dataclass(frozen=True)
class ModelGrid:
    scene_width: int
    scene_height: int
    width: int
    height: int

    @property
    def resampled(self) -> bool:
        return (self.width, self.height) != (self.scene_width, self.scene_height)

    @property
    def scale_x(self) -> float:
        """Scene pixels per grid pixel along x."""
        return self.scene_width / self.width

    @property
    def scale_y(self) -> float:
        return self.scene_height / self.height

    def scene_window(self, row: int, col: int, rows: int, cols: int) -> Window:
        return Window(col * self.scale_x, row * self.scale_y, cols * self.scale_x, rows * self.scale_y)

    def transform(self, scene_transform: Affine) -> Affine:
        return scene_transform @ Affine.scale(self.scale_x, self.scale_y)


def model_grid(width: int, height: int, gsd_m: tuple[float, float], model_gsd_m: float) -> ModelGrid:
    fx, fy = gsd_m[0] / model_gsd_m, gsd_m[1] / model_gsd_m
    if abs(fx - 1) <= GSD_TOLERANCE and abs(fy - 1) <= GSD_TOLERANCE:
        return ModelGrid(width, height, width, height)
    return ModelGrid(width, height, max(1, round(width * fx)), max(1, round(height * fy)))


def check_model_grid(grid: ModelGrid, gsd_m: tuple[float, float], model_gsd_m: float, max_pixels: float,
                     name: str) -> None:
    """Refuse a scene the model cannot see, or whose grid at the model's resolution exceeds the pixel limit
    (checked after resampling is planned: a small file can declare a huge ground extent)."""
    from deadtree.errors import InputError

    coarser = min(gsd_m) / model_gsd_m
    if coarser > MAX_COARSER:
        raise InputError(f"{name}: its {min(gsd_m):.3g} m pixels are {coarser:.1f}x coarser than the model's "
                         f"{model_gsd_m:g} m, where a dead crown (1-5 m) is a pixel or less; use imagery of "
                         f"{MAX_COARSER * model_gsd_m:.3g} m or finer")
    if grid.width * grid.height > max_pixels:
        raise InputError(f"{name}: at the model's {model_gsd_m:g} m it would be {grid.width} x {grid.height} pixels, "
                         f"beyond the limit of {max_pixels:.3g}; check its pixel size, or cut it into parts")


def identity_grid(width: int, height: int) -> ModelGrid:
    return ModelGrid(width, height, width, height)
