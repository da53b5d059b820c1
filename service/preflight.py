"""Checks an uploaded scene from its header, and its options against the shipped models, before it is queued,
so the client hears about a bad file at once (4xx) instead of from a failed job later.

Runs in a worker thread: opening a raster is blocking I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from deadtree.errors import DeadtreeError
from deadtree.model_choice import choose_models
from deadtree.raster.scene import open_scene

from service.errors import ApiError, from_deadtree
from service.options import JobOptions

# GeoTIFF only: other GDAL drivers read formats (VRT, for one) that can point at files on the server.
ALLOWED_DRIVER = "GTiff"
MAX_BLOCKS_TO_CHECK = 200_000  # about 0.2 s of header look-ups


@dataclass(frozen=True)
class SceneFacts:
    width: int
    height: int
    bands: tuple[str, ...]


def check_upload(path: Path, display_name: str, options: JobOptions, max_pixels: float,
                 sync_max_pixels: float | None = None, device: str = "cpu") -> SceneFacts:
    with _open_geotiff(path, display_name) as dataset:  # the header only: GDAL decodes no pixel to open a file
        width, height = dataset.width, dataset.height
        if width * height > max_pixels:
            raise ApiError(413, "raster_too_large",
                           f"{display_name} claims {width} x {height} pixels, more than this server takes "
                           f"({max_pixels:.3g} pixels): split the scene into parts")
        if sync_max_pixels is not None and width * height > sync_max_pixels:
            raise ApiError(413, "use_jobs",
                           f"{display_name} has {width} x {height} pixels, more than POST /v1/segment answers in "
                           f"one request ({sync_max_pixels:.3g}); submit it to POST /v1/jobs and poll the job")
        _check_complete(dataset, path.stat().st_size, display_name)
    try:
        scene = open_scene(path, options.bands, max_pixels=max_pixels)
    except DeadtreeError as exc:
        raise scrubbed(from_deadtree(exc), path, display_name) from None
    try:
        bands = tuple(scene.band_index)
    finally:
        scene.close()
    try:
        check_models(options, bands, display_name, device)
    except DeadtreeError as exc:
        raise from_deadtree(exc) from None
    return SceneFacts(width, height, bands)


def _open_geotiff(path: Path, display_name: str):
    try:
        return rasterio.open(path, driver=ALLOWED_DRIVER)
    except (RasterioError, OSError, ValueError):
        raise ApiError(422, "not_a_geotiff", f"{display_name} is not a GeoTIFF that can be read (not a TIFF, or "
                       "its header is damaged or cut off)") from None


def _check_complete(dataset, file_size: int, display_name: str) -> None:
    """A cut-off upload keeps its header (GDAL writes it first) but loses the blocks at the end: compare where
    the header says each block lies with the file's real size. Header reads only, newest blocks first."""
    block_rows, block_cols = dataset.block_shapes[0]
    n_rows = -(-dataset.height // max(block_rows, 1))
    n_cols = -(-dataset.width // max(block_cols, 1))
    bands = range(1, dataset.count + 1) if dataset.interleaving and dataset.interleaving.name == "band" else [1]
    looked = 0
    for band in reversed(bands):
        for index in reversed(range(n_rows * n_cols)):
            if looked >= MAX_BLOCKS_TO_CHECK:
                return
            looked += 1
            row, col = divmod(index, n_cols)
            try:
                offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                size = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
            except RasterioError:
                return  # not the plain TIFF layout this check knows: leave it to the pipeline's own reads
            if offset and size and int(offset) + int(size) > file_size:
                raise ApiError(422, "truncated_scene", f"{display_name} is cut off: its header describes "
                               f"more data than the {file_size} bytes that arrived (an incomplete upload or copy?)")


def check_models(options: JobOptions, scene_bands: tuple[str, ...], display_name: str, device: str) -> None:
    """The pipeline's own model checks (names, bands, precision variants), run on the upload's header."""
    choose_models(scene_bands, display_name, options.segment_options(Path(display_name), None, device, math.inf),
                  bands_hint="give the band order in the form field bands, e.g. R,G,B,NIR")


def scrubbed(error: ApiError, path: Path, display_name: str) -> ApiError:
    """Messages from GDAL name the file by its path on the server: show the client's own file name instead."""
    detail = error.detail.replace(str(path.parent) + "/", "").replace(path.name, display_name)
    return ApiError(error.status, error.code, detail, error.headers)
