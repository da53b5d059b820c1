"""`deadtree evaluate PRED TRUTH`: score predicted dead trees against ground truth on one pixel grid.

Inputs, and how each becomes a boolean mask:
- polygons (GeoJSON, GeoPackage, Shapefile, ...): rasterised onto the grid, a pixel counts when its centre is
  inside; reprojected first when their CRS differs from the grid's (GeoJSON is always EPSG:4326).
- a raster: the file's scale/offset is applied (so deadtree's own --probabilities output reads 0-1) and a pixel
  is dead when the value >= threshold; 0/1 and 0/255 masks therefore read right with any threshold in (0, 1].
  Nodata never counts as dead; nodata in the truth raster is left out of the scores altogether.
- a Kaggle-layout truth folder (masks/mask_<id>.png) with a folder of predicted PNGs of the same names,
  compared image by image and pooled.

The grid is the truth raster's; if the truth is polygons, the predicted raster's; if both are polygons, the
raster given as `grid` (e.g. the scene). Matching rule for objects: see MATCHING_RULE.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deadtree.errors import InputError
from deadtree.metrics import Scores

MATCHING_RULE = (
    "Objects are 8-connected groups of dead pixels. A true object counts as found when a predicted object "
    "overlaps it with IoU >= 0.25; matches are one to one, taken greedily from the highest IoU down. Object "
    "precision = matched / predicted objects, recall = matched / true objects."
)
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".asc"}
MASK_GLOB = "mask_*.png"


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int]  # rows, cols
    transform: object  # affine.Affine
    crs: object  # rasterio CRS or None

    @classmethod
    def of(cls, dataset) -> "Grid":
        return cls((dataset.height, dataset.width), dataset.transform, dataset.crs)

    def same_as(self, dataset) -> bool:
        return (self.shape == (dataset.height, dataset.width) and self.crs == dataset.crs
                and self.transform.almost_equals(dataset.transform))


def evaluate(pred: str | Path, truth: str | Path, threshold: float = 0.5, grid: str | Path | None = None) -> dict:
    """Scores of `pred` against `truth` as a JSON-ready dict (see module docstring for the inputs)."""
    pred, truth = Path(pred), Path(truth)
    if not 0 < threshold <= 1:
        raise InputError("--threshold must be in (0, 1]")
    for path in (pred, truth):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    if truth.is_dir() or pred.is_dir():
        if not (truth.is_dir() and pred.is_dir()):
            raise InputError("a folder of masks can only be compared with another folder of masks")
        scores, images = _score_folders(pred, truth, threshold)
    else:
        scores = Scores()
        reference = _grid_for(pred, truth, grid)
        truth_mask, valid = _truth_mask(truth, reference)
        scores.add(_pred_mask(pred, reference, threshold), truth_mask, valid)
        images = 1
    report = {"pred": str(pred), "truth": str(truth), "threshold": threshold}
    report.update(scores.summary())
    report.update({f"pixel_{k}": v for k, v in asdict(scores.pixels).items()})
    report["images"] = images
    report["matching"] = MATCHING_RULE
    return report


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def _grid_for(pred: Path, truth: Path, grid: str | Path | None) -> Grid:
    source = truth if is_raster(truth) else pred if is_raster(pred) else Path(grid) if grid else None
    if source is None:
        raise InputError("both inputs are polygons: give --grid RASTER (e.g. the scene) to compare them on its pixels")
    with _open_raster(source, mask=source in (truth, pred)) as ds:  # --grid may be the scene itself
        return Grid.of(ds)


def _open_raster(path: Path, mask: bool = True):
    import rasterio
    from rasterio.errors import RasterioError

    try:
        dataset = rasterio.open(path)
    except RasterioError as exc:
        raise InputError(f"{path.name} is not a raster GDAL can read ({str(exc).splitlines()[0]})") from exc
    if mask and dataset.count != 1:
        # an orthophoto passed by mistake would read as one huge dead tree (every pixel nonzero)
        dataset.close()
        raise InputError(f"{path.name} has {dataset.count} bands: a mask or probability raster has one "
                         "(nonzero or above --threshold = dead tree)")
    return dataset


def _truth_mask(path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray | None]:
    """(dead, valid): a truth raster is the grid itself, so it is read as is; polygons are rasterised."""
    if not is_raster(path):
        return polygons_to_mask(path, grid), None
    with _open_raster(path) as ds:
        band = ds.read(1, masked=True)
    valid = ~np.ma.getmaskarray(band)
    return (band.filled(0) != 0) & valid, valid


def _pred_mask(path: Path, grid: Grid, threshold: float) -> np.ndarray:
    if not is_raster(path):
        return polygons_to_mask(path, grid)
    with _open_raster(path) as ds:
        band = ds.read(1, masked=True)
        scale, offset = ds.scales[0], ds.offsets[0]
        # A hair of tolerance: code * (1/254) can land one ulp below the threshold the code stands for.
        values = band.filled(0).astype(np.float64) * scale + offset
        dead = (values >= threshold - 1e-9) & ~np.ma.getmaskarray(band)
        if grid.same_as(ds):
            return dead
        return _warp_mask(dead, ds, grid)


def _warp_mask(mask: np.ndarray, ds, grid: Grid) -> np.ndarray:
    """Nearest-neighbour onto the grid: thresholding first keeps the answer independent of resampling."""
    from rasterio.warp import Resampling, reproject

    if ds.crs is None or grid.crs is None:
        raise InputError(f"{Path(ds.name).name} is on another pixel grid than the truth and one of them has no CRS")
    out = np.zeros(grid.shape, dtype=np.uint8)
    reproject(mask.astype(np.uint8), out, src_transform=ds.transform, src_crs=ds.crs,
              dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.nearest)
    return out.astype(bool)


def polygons_to_mask(path: Path, grid: Grid) -> np.ndarray:
    """Pixels whose centre lies inside any polygon of the file's first layer."""
    import pyogrio
    from rasterio.features import rasterize

    try:
        frame = pyogrio.read_dataframe(path, layer=0, columns=[])
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise InputError(f"{path.name} is neither a raster nor polygons GDAL can read ({exc})") from exc
    if len(frame) == 0:
        return np.zeros(grid.shape, dtype=bool)
    if frame.crs is None or grid.crs is None:
        raise InputError(f"{path.name} or the grid it is compared on has no CRS: polygons cannot be placed")
    if frame.crs != grid.crs:
        frame = frame.to_crs(grid.crs)
    shapes = [(geom, 1) for geom in frame.geometry.values if geom is not None and not geom.is_empty]
    if not shapes:
        return np.zeros(grid.shape, dtype=bool)
    return rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8").astype(bool)


def _score_folders(pred: Path, truth: Path, threshold: float) -> tuple[Scores, int]:
    """Kaggle layout: every truth mask needs a predicted mask of the same file name (in PRED or PRED/masks)."""
    truth_dir = truth / "masks" if (truth / "masks").is_dir() else truth
    pred_dir = pred / "masks" if (pred / "masks").is_dir() else pred
    truth_files = sorted(truth_dir.glob(MASK_GLOB))
    if not truth_files:
        raise InputError(f"no {MASK_GLOB} found in {truth_dir}")
    missing = [p.name for p in truth_files if not (pred_dir / p.name).is_file()]
    if missing:
        raise InputError(f"{len(missing)} truth masks have no prediction of the same name in {pred_dir}, "
                         f"e.g. {', '.join(missing[:3])}")
    scores = Scores()
    for truth_file in truth_files:
        truth_mask = png_mask(truth_file, 0.5)
        pred_mask = png_mask(pred_dir / truth_file.name, threshold)
        if pred_mask.shape != truth_mask.shape:
            raise InputError(f"{truth_file.name}: prediction is {pred_mask.shape[1]} x {pred_mask.shape[0]} px, "
                             f"truth {truth_mask.shape[1]} x {truth_mask.shape[0]}")
        scores.add(pred_mask, truth_mask)
    return scores, len(truth_files)


def png_mask(path: Path, threshold: float) -> np.ndarray:
    """0/1 masks, 0/255 masks and 8-bit probabilities: value / (1 or 255) >= threshold."""
    from PIL import Image

    values = np.asarray(Image.open(path).convert("L"))
    scale = 255.0 if values.max(initial=0) > 1 else 1.0
    return values / scale >= threshold
