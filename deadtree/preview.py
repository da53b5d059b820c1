"""A quicklook PNG of the scene with the dead-tree outlines drawn on it: a check at a glance, without a GIS.

The scene is read decimated (GDAL shrinks it while reading, from overviews where the file has them), so only
the small image is ever held in memory, whatever the scene size.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from deadtree.errors import InputError
from deadtree.raster.normalise import band_percentiles
from deadtree.raster.scene import Scene
from deadtree.raster.validity import declared_invalid

PREVIEW_SIDE = 1600  # longest side of the PNG, in pixels
OUTLINE_RGBA = (255, 255, 0, 255)  # yellow: stands out on green canopy and on red (NIR false colour) canopy
# display channels (red, green, blue) for each choice; "nir" is the usual colour-infrared look
PREVIEW_BANDS = {"rgb": ("R", "G", "B"), "nir": ("NIR", "R", "G")}


def preview_bands(scene: Scene, choice: str) -> tuple[str, ...]:
    """The scene bands shown for `choice`; checked before any work, so a bad choice fails at once."""
    bands = PREVIEW_BANDS.get(choice.lower())
    if bands is None:
        raise InputError(f"--preview-bands must be one of {', '.join(PREVIEW_BANDS)}, not {choice!r}")
    missing = [b for b in bands if b not in scene.band_index]
    if missing:
        raise InputError(f"--preview-bands {choice} needs {','.join(bands)} but {scene.path.name} has no "
                         f"{','.join(missing)} band")
    return bands


def write_preview(path: str | Path, scene: Scene, polygons: str | Path | None, choice: str = "rgb",
                  max_side: int = PREVIEW_SIDE) -> tuple[int, int]:
    """Write the PNG; `polygons` is any vector file GDAL reads (reprojected to the scene CRS). Returns (cols, rows)."""
    image, transform = quicklook(scene, preview_bands(scene, choice), max_side)
    if polygons is not None:
        draw_outlines(image, read_outlines(polygons, scene.crs), transform)
    image.save(path, format="PNG")
    return image.size


def quicklook(scene: Scene, bands: tuple[str, ...], max_side: int = PREVIEW_SIDE):
    """(RGBA image, affine transform of its pixels): stretched 1-99 percentiles like the models, nodata clear."""
    ds = scene.dataset
    scale = max(1.0, max(scene.width, scene.height) / max_side)  # never enlarge small scenes
    shape = (max(1, math.ceil(scene.height / scale)), max(1, math.ceil(scene.width / scale)))
    pixels = ds.read(scene.indexes(bands), out_shape=(len(bands), *shape), resampling=Resampling.average)
    valid = ~declared_invalid(pixels, scene.nodata)
    if scene.alpha_index:
        valid &= ds.read(scene.alpha_index, out_shape=shape, resampling=Resampling.nearest) != 0
    if scene.dataset_mask:
        valid &= ds.read_masks(1, out_shape=shape, resampling=Resampling.nearest) != 0
    stretched = np.clip(band_percentiles(pixels, valid).apply(pixels), 0.0, 1.0)
    rgb = np.rint(stretched * 255).astype(np.uint8)
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    image = Image.fromarray(np.dstack([*rgb, alpha]), "RGBA")
    transform = ds.transform @ Affine.scale(scene.width / shape[1], scene.height / shape[0])
    return image, transform


def read_outlines(path: str | Path, crs) -> np.ndarray:
    """Polygons of the first layer (the dead trees in our outputs), in `crs`."""
    import pyogrio

    frame = pyogrio.read_dataframe(path, layer=0, columns=[])
    if frame.crs is not None and len(frame):
        frame = frame.to_crs(crs)
    return frame.geometry.values


def draw_outlines(image: Image.Image, geometries, transform) -> None:
    draw = ImageDraw.Draw(image)
    to_pixel = ~transform
    for geom in geometries:
        if geom is None or geom.is_empty:
            continue
        for ring in shapely.get_rings(shapely.get_parts(geom)):
            cols, rows = to_pixel @ tuple(np.asarray(ring.coords).T)
            # PIL puts integer coordinates on pixel centres; raster space puts them on pixel corners.
            points = list(zip(cols - 0.5, rows - 0.5))
            draw.line(points, fill=OUTLINE_RGBA, width=1)
