"""Checks an uploaded scene from its header, and its options against the shipped models, before it is queued,
so the client hears about a bad file at once (4xx) instead of from a failed job later.

Runs in a worker thread: opening a raster is blocking I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from deadtree.errors import DeadtreeError, ModelError
from deadtree.raster.scene import open_scene
from deadtree.runtime.registry import default_segmenter

from service.errors import ApiError, from_deadtree
from service.models import find_shipped, shipped
from service.options import JobOptions

# GeoTIFF only: other GDAL drivers read formats (VRT, for one) that can point at files on the server.
ALLOWED_DRIVER = "GTiff"


@dataclass(frozen=True)
class SceneFacts:
    width: int
    height: int
    bands: tuple[str, ...]


def check_upload(path: Path, display_name: str, options: JobOptions, max_pixels: float,
                 sync_max_pixels: float | None = None) -> SceneFacts:
    width, height = _header_size(path, display_name)
    if width * height > max_pixels:
        raise ApiError(413, "raster_too_large",
                       f"{display_name} claims {width} x {height} pixels, more than this server takes "
                       f"({max_pixels:.3g} pixels): split the scene into parts")
    if sync_max_pixels is not None and width * height > sync_max_pixels:
        raise ApiError(413, "use_jobs",
                       f"{display_name} has {width} x {height} pixels, more than POST /v1/segment answers in one "
                       f"request ({sync_max_pixels:.3g}); submit it to POST /v1/jobs and poll the job instead")
    try:
        scene = open_scene(path, options.bands, max_pixels=max_pixels)
    except DeadtreeError as exc:
        raise scrubbed(from_deadtree(exc), path, display_name) from None
    try:
        bands = tuple(scene.band_index)
    finally:
        scene.close()
    try:
        check_models(options, set(bands), display_name)
    except DeadtreeError as exc:
        raise from_deadtree(exc) from None
    return SceneFacts(width, height, bands)


def _header_size(path: Path, display_name: str) -> tuple[int, int]:
    """Width and height from the header alone: GDAL decodes no pixel to open a file."""
    try:
        with rasterio.open(path, driver=ALLOWED_DRIVER) as dataset:
            return dataset.width, dataset.height
    except (RasterioError, OSError, ValueError):
        raise ApiError(422, "not_a_geotiff", f"{display_name} is not a GeoTIFF that can be read (not a TIFF, or "
                       "its header is damaged or cut off)") from None


def check_models(options: JobOptions, scene_bands: set[str], display_name: str) -> None:
    """The same rules the pipeline applies when it loads the models, checked up front."""
    if options.model:
        segmenter = find_shipped(options.model, "segmenter").info
    else:
        default = default_segmenter(scene_bands)
        segmenter = next(m.info for m in shipped("segmenter") if m.path == default)
    reader = segmenter
    if options.translator:
        reader = find_shipped(options.translator, "translator").info
        if not set(segmenter.bands) <= set(reader.bands):
            raise ModelError(f"translator {reader.name} writes {','.join(reader.bands)} but segmenter "
                             f"{segmenter.name} reads {','.join(segmenter.bands)}")
    missing = [b for b in reader.bands if b not in scene_bands]
    if missing:
        have = ",".join(sorted(scene_bands)) or "no tagged bands"
        raise ModelError(f"{display_name} has bands {have}; model {reader.name} needs {','.join(reader.bands)} "
                         f"(missing {','.join(missing)}). If the file's colour tags are wrong, give the band order "
                         "in the form field bands, e.g. R,G,B,NIR")


def scrubbed(error: ApiError, path: Path, display_name: str) -> ApiError:
    """Messages from GDAL name the file by its path on the server: show the client's own file name instead."""
    detail = error.detail.replace(str(path.parent) + "/", "").replace(path.name, display_name)
    return ApiError(error.status, error.code, detail, error.headers)
