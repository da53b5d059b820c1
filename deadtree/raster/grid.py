"""The model grid: the scene's extent at the model's ground resolution, and the map between the two grids."""
from __future__ import annotations

from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

GSD_TOLERANCE = 0.05  # within 5% of the model's GSD, read the scene as it is


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


def identity_grid(width: int, height: int) -> ModelGrid:
    return ModelGrid(width, height, width, height)
