"""One layer of the polygons of many scenes, with a `scene` column, in one CRS: GeoPackage or GeoParquet.

The per-scene GeoPackages are in each scene's own CRS. When every scene shares one, the merged layer keeps it
(areas and distances stay in metres); when they differ, no projected CRS suits them all, so lon/lat it is.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from deadtree.errors import InputError
from deadtree.outputs import check_writable, discard, publish, workspace
from deadtree.vector.style import add_default_style
from deadtree.vector.writers import GPKG_LAYER

MERGED_FORMATS = {".gpkg": "GeoPackage", ".parquet": "GeoParquet"}
LONLAT = "EPSG:4326"


@dataclass
class MergeSummary:
    path: Path
    polygons: int
    scenes: int
    crs: str
    crs_reason: str


def check_merged_target(path: Path) -> None:
    """Fail before any scene runs, not after an hour of work, if the merged file cannot be written."""
    suffix = Path(path).suffix.lower()
    if suffix not in MERGED_FORMATS:
        raise InputError(f"--merged {path}: use a .gpkg (GeoPackage) or .parquet (GeoParquet) file name")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise InputError("writing GeoParquet needs pyarrow: pip install 'deadtree[cluster]', or use a .gpkg name")
    check_writable(path)


def common_crs(crs_names: list[str]) -> tuple[str, str]:
    """The CRS for the merged layer and, for the user, why it was chosen."""
    from pyproj import CRS

    unique: list = []
    for name in crs_names:
        crs = CRS.from_user_input(name)
        if not any(crs == seen for seen in unique):
            unique.append(crs)
    if len(unique) == 1:
        return crs_names[0], "the CRS all scenes share"
    return LONLAT, f"lon/lat, because the scenes use {len(unique)} different CRSs"


def merge_scene_layers(layers: dict[str, Path], target: Path) -> MergeSummary:
    """`layers` maps a scene's file name to its GeoPackage; rows keep their per-scene `id`."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    frames = {name: pyogrio.read_dataframe(path, layer=GPKG_LAYER) for name, path in layers.items()}
    crs_name, reason = common_crs([frame.crs.to_string() for frame in frames.values()])
    parts = []
    for name, frame in frames.items():
        frame = frame.to_crs(crs_name)
        frame.insert(0, "scene", name)
        parts.append(frame)
    merged = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs_name)
    _write_atomically(merged, Path(target))
    return MergeSummary(Path(target), len(merged), len(frames), crs_name, reason)


def _write_atomically(frame, target: Path) -> None:
    import pyogrio

    tmp = workspace(target)
    try:
        partial = tmp / target.name
        if target.suffix.lower() == ".parquet":
            frame.to_parquet(partial)
        else:
            # The geometry type is given so an empty result still makes a valid, typed layer.
            pyogrio.write_dataframe(frame, partial, layer=GPKG_LAYER, driver="GPKG", promote_to_multi=True,
                                    geometry_type="MultiPolygon")
            add_default_style(partial, GPKG_LAYER)  # QGIS colours the outlines by score_mean, as per scene
        publish(partial, target)
    finally:
        discard(tmp)
