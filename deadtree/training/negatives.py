"""Hard negatives: NAIP tiles of towns, where every visible tree is marked and (almost) none is dead.

A segmenter trained on forest frames alone has never seen a roof, a car or a lawn, and calls some of them dead
trees. These tiles teach it what is not one: every pixel is a negative, except near a marked tree that does not
look alive. The annotators marked all trees without telling live from dead, so a dead street tree may stand
among the points; a tree point whose surroundings have a low NDVI is such a candidate, and its disk is left out
of the loss (IGNORE) instead of being taught as "not dead".
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from deadtree.errors import InputError
from deadtree.training.frames import Frame, name_selected, parse_prefixes

IGNORE = 2  # mask value of pixels left out of the loss (the masks are otherwise 0 / 1)
LIVE_NDVI = 0.2  # a marked tree whose 5 x 5 px neighbourhood has a lower mean NDVI may be dead
IGNORE_RADIUS_PX = 6  # 3.6 m at NAIP's 0.6 m: the crown of a street tree
BAND_INDEX = {"R": 0, "G": 1, "B": 2, "NIR": 3}


def city_of(tile_name: str) -> str:
    """'palm_springs_2020_17' -> 'palm_springs'."""
    return tile_name.split("_20")[0]


def load_negative_tiles(root: str | Path, bands: tuple[str, ...], cities: str | tuple[str, ...] = (),
                        exclude: str | tuple[str, ...] = ()) -> list[Frame]:
    """Frames of every tile under root/images whose city is selected and not excluded, with IGNORE disks
    around marked trees that may be dead. Frame.group is the city."""
    import rasterio  # here, not at the top: training without --negatives needs no geospatial library

    root = Path(root)
    images = sorted((root / "images").glob("*.tif"))
    if not images:
        raise InputError(f"--negatives: no images/*.tif under {root} (the layout of ../shared/data/naip_urban)")
    chosen, left_out = parse_prefixes(cities), parse_prefixes(exclude)
    frames = []
    for path in images:
        city = city_of(path.stem)
        if not name_selected(city, chosen) or (left_out and name_selected(city, left_out)):
            continue
        with rasterio.open(path) as scene:
            pixels = scene.read()  # (4, rows, cols): R, G, B, NIR whatever band 4 is tagged
        if pixels.shape[0] < 4 or pixels.dtype != np.uint8:
            raise InputError(f"{path}: expected 4 bands of uint8 (R, G, B, NIR), found {pixels.shape[0]} of "
                             f"{pixels.dtype}")
        mask = np.zeros(pixels.shape[1:], dtype=np.uint8)
        for col, row in doubtful_trees(pixels, tree_points(root, path.stem)):
            _disk(mask, row, col, IGNORE_RADIUS_PX)
        image = np.dstack([pixels[BAND_INDEX[b]] for b in bands])
        frames.append(Frame(path.stem, city, image, mask))
    if not frames:
        raise InputError(f"--negatives: no tiles of the chosen cities under {root}")
    return frames


def tree_points(root: Path, name: str) -> np.ndarray:
    """(n, 2) column, row of the trees marked on a tile; none where the tile has no points file."""
    path = root / "points_csv" / f"{name}.csv"
    if not path.exists():
        return np.zeros((0, 2))
    with path.open() as handle:
        rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(handle)]
    return np.asarray(rows, dtype=float).reshape(-1, 2)


def doubtful_trees(pixels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The points whose 5 x 5 px neighbourhood has a mean NDVI under LIVE_NDVI."""
    red, nir = pixels[0].astype(np.float32), pixels[3].astype(np.float32)
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    rows, cols = ndvi.shape
    keep = []
    for col, row in points:
        r, c = int(round(row)), int(round(col))
        window = ndvi[max(0, r - 2):min(rows, r + 3), max(0, c - 2):min(cols, c + 3)]
        if window.size and window.mean() < LIVE_NDVI:
            keep.append((col, row))
    return np.asarray(keep, dtype=float).reshape(-1, 2)


def _disk(mask: np.ndarray, row: float, col: float, radius: int) -> None:
    rr, cc = np.ogrid[:mask.shape[0], :mask.shape[1]]
    mask[(rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2] = IGNORE
