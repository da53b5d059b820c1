"""Opening a scene: checks that it can be mapped, and everything the pipeline needs to know about it."""
from __future__ import annotations

import glob
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError

from deadtree.errors import InputError
from deadtree.raster.band_mapping import map_bands, tagged_band_names, untagged_fourth_band
from deadtree.raster.ground_scale import ground_scale

MAX_PIXELS = 2e10  # ~141,000 px square; larger headers are far more often damaged than real
log = logging.getLogger("deadtree")
MAX_SIDE = 2_000_000
# Image bands, a skipped band or two and an alpha band: more is a stack deadtree does not read, and each band
# tagged alpha is sampled when the scene is opened.
MAX_BANDS = 16
OVERVIEW_SIDE = 1024  # longest side of the decimated read used for statistics and edge fill


@dataclass
class Scene:
    path: Path
    dataset: rasterio.DatasetReader
    band_index: dict[str, int]  # band name -> 1-based file band
    alpha_index: int | None  # 1-based band that is a real transparency mask
    metres_per_unit: tuple[float, float]  # ground metres per CRS unit (x, y) where the scene lies (ground_scale)
    dataset_mask: bool = False  # an internal (per-dataset) mask to honour
    notes: list[str] = field(default_factory=list)

    @property
    def gsd_m(self) -> tuple[float, float]:
        """Ground size of a pixel (x, y) in metres."""
        return abs(self.transform.a) * self.metres_per_unit[0], abs(self.transform.e) * self.metres_per_unit[1]

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def crs(self):
        return self.dataset.crs

    @property
    def transform(self):
        return self.dataset.transform

    @property
    def nodata(self):
        return self.dataset.nodata

    def indexes(self, bands: tuple[str, ...]) -> list[int]:
        return [self.band_index[b] for b in bands]

    def close(self) -> None:
        self.dataset.close()


def open_scene(path: str | Path, bands_override: tuple[str, ...] | None = None,
               max_pixels: float = MAX_PIXELS) -> Scene:
    path = Path(path)
    many = "; for many scenes: deadtree segment-many 'FOLDER/*.tif' --out-dir OUT"
    if not path.exists():
        raise InputError(f"{path}: no such file" + (many if glob.has_magic(str(path)) else ""))
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a raster file{many}")
    try:
        with warnings.catch_warnings():
            # reported below as one clear line instead
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except (RasterioIOError, RasterioError) as exc:
        raise InputError(f"{path.name} is not a raster GDAL can read ({_first_line(exc)})") from exc
    try:
        return _describe(path, dataset, bands_override, max_pixels)
    except BaseException:
        dataset.close()
        raise


def _describe(path: Path, dataset, bands_override, max_pixels: float) -> Scene:
    width, height = dataset.width, dataset.height
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise InputError(
            f"{path.name} claims {width} x {height} pixels, beyond the limit of {max_pixels:.3g} pixels: "
            "the header is probably damaged (or split the scene into parts)"
        )
    if dataset.count > MAX_BANDS:
        raise InputError(f"{path.name} has {dataset.count} bands, more than the {MAX_BANDS} deadtree looks at: pick "
                         "the R, G, B (and NIR) bands first, e.g. gdal_translate -b 3 -b 2 -b 1 -b 4")
    complex_types = sorted({dt for dt in dataset.dtypes if np.dtype(dt).kind == "c"})
    if complex_types:
        raise InputError(f"{path.name} holds complex numbers ({', '.join(complex_types)}), not image intensities: "
                         "deadtree reads optical imagery (R, G, B and NIR)")
    if dataset.transform.is_identity and not dataset.gcps[0]:
        raise InputError(f"{path.name} has no georeferencing (no geotransform): polygons could not be placed on a map")
    if dataset.transform.is_identity:  # GCPs only: their CRS is the GCPs', not the dataset's
        raise InputError(f"{path.name} is georeferenced by ground control points only: warp it first, e.g. "
                         f"gdalwarp {path.name} north_up.tif (or rio warp with --dst-crs)")
    pixel = (dataset.transform.a, dataset.transform.e)
    if not all(math.isfinite(v) and v != 0 for v in pixel):
        raise InputError(f"{path.name} declares a pixel size of {pixel[0]:g} x {-pixel[1]:g}: its geotransform is "
                         "damaged; set the real one, e.g. rio edit-info --transform")
    if dataset.crs is None:
        raise InputError(f"{path.name} has no coordinate reference system: assign one, e.g. rio edit-info "
                         f"{path.name} --crs EPSG:XXXX (rasterio's tool, installed with deadtree)")
    if dataset.transform.is_identity or dataset.transform.b != 0 or dataset.transform.d != 0:
        raise InputError(f"{path.name} is not north-up (rotated or GCP-only georeferencing): warp it first, e.g. "
                         f"rio warp {path.name} north_up.tif --dst-crs EPSG:XXXX (rasterio's tool, installed with "
                         "deadtree) or gdalwarp")
    names = tagged_band_names(dataset.colorinterp, dataset.descriptions)
    # bands that may be a transparency mask or an image band: sampled, to tell which
    alpha_samples = {
        i + 1: _decimated(dataset, [i + 1])[0]
        for i, interp in enumerate(dataset.colorinterp)
        if interp.name == "alpha" or (i == 3 and untagged_fourth_band(names))
    }
    band_index, alpha_index = map_bands(names, alpha_samples, bands_override)
    flags = dataset.mask_flag_enums[0]
    dataset_mask = MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and MaskFlags.nodata not in flags
    try:
        per_unit = ground_scale(dataset.crs, dataset.transform, width, height)
    except ValueError as exc:
        raise InputError(f"{path.name}: {exc}; check its CRS and geotransform") from exc
    return Scene(path, dataset, band_index, alpha_index, per_unit, dataset_mask)


def decimated_shape(width: int, height: int, side: int = OVERVIEW_SIDE) -> tuple[int, int]:
    """(rows, cols) of a decimated read whose longest side is at most `side` px."""
    scale = max(max(width, height) / side, 1)
    return max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale))


def _decimated(dataset, indexes: list[int], side: int = OVERVIEW_SIDE) -> np.ndarray:
    """A nearest-neighbour read with the longest side at most `side` px (uses overviews when present)."""
    rows, cols = decimated_shape(dataset.width, dataset.height, side)
    shape = (len(indexes), rows, cols)
    try:
        return dataset.read(indexes, out_shape=shape, resampling=Resampling.nearest)
    except (RasterioIOError, RasterioError) as exc:
        if not dataset.overviews(indexes[0]):
            raise unreadable(dataset.name, exc) from exc
        log.warning("%s: its overviews cannot be read (%s): reading its full-resolution data instead",
                    Path(dataset.name).name, _first_line(exc))
    try:  # the same decimation from the full-resolution blocks, the overviews out of GDAL's sight
        with rasterio.open(dataset.name, OVERVIEW_LEVEL="NONE") as whole:
            return whole.read(indexes, out_shape=shape, resampling=Resampling.nearest)
    except (RasterioIOError, RasterioError) as exc:
        raise unreadable(dataset.name, exc) from exc


def read_decimated(scene: Scene, bands: tuple[str, ...], side: int = OVERVIEW_SIDE) -> np.ndarray:
    return _decimated(scene.dataset, scene.indexes(bands), side)


def unreadable(path: str | Path, exc: Exception) -> InputError:
    """The error for a scene whose pixels GDAL could not read."""
    return InputError(f"{Path(path).name} cannot be read: the file is truncated or damaged ({_first_line(exc)})")


def _first_line(exc: Exception) -> str:
    """The first line of what went wrong: GDAL's own message where rasterio's only points to it."""
    text = str(exc).strip()
    if "see previous exception" in text.lower() and exc.__cause__ is not None:
        cause = exc.__cause__
        text = str(cause.args[-1] if getattr(cause, "args", None) else cause).strip()
    return text.splitlines()[0] if text else type(exc).__name__
