"""Writers for the polygon outputs: RFC 7946 GeoJSON in lon/lat, and a GeoPackage in the scene's CRS.

Both write to the temporary path they are given; the pipeline renames complete files into place.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import mapping

from deadtree.vector.geometry import right_hand

FIELDS = ("id", "area_m2", "perimeter_m", "score_mean", "score_max")
LONLAT_DECIMALS = 7  # ~1 cm: well below a 0.1 m pixel, and no bloat from 15-digit floats
GPKG_LAYER = "dead_trees"


class GeoJSONWriter:
    def __init__(self, path: Path, crs, metadata: dict):
        self.path = Path(path)
        self.to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
        self.handle = open(self.path, "w", encoding="utf-8")
        self.handle.write('{"type": "FeatureCollection",\n"name": ' + json.dumps(metadata.get("layer", "dead_trees")))
        self.handle.write(',\n"deadtree": ' + json.dumps(metadata) + ',\n"features": [\n')
        self.count = 0

    def write(self, geom_crs, properties: dict) -> None:
        lonlat = shapely.transform(geom_crs, self._project, interleaved=False)
        geometry = mapping(right_hand(lonlat))
        feature = {"type": "Feature", "id": properties["id"], "properties": properties, "geometry": geometry}
        self.handle.write((",\n" if self.count else "") + json.dumps(feature, separators=(",", ":")))
        self.count += 1

    def _project(self, x, y):
        # Rounded as whole arrays: k / 10^7 divided in float is the double nearest that decimal, so json
        # writes it short, as Python's round() would (which costs a call per number).
        lon, lat = self.to_lonlat.transform(x, y)
        return np.round(lon, LONLAT_DECIMALS), np.round(lat, LONLAT_DECIMALS)

    def close(self) -> None:
        self.handle.write("\n]}\n")
        self.handle.close()


class GeoPackageWriter:
    """Buffers features and appends them in batches, so memory stays flat on scenes with many polygons."""

    def __init__(self, path: Path, crs, metadata: dict, batch: int = 5000):
        self.path = Path(path)
        self.crs = crs
        self.metadata = {k: str(v) for k, v in metadata.items()}
        self.batch = batch
        self.rows: list[dict] = []
        self.geoms: list = []
        self.written = 0

    def write(self, geom_crs, properties: dict) -> None:
        self.rows.append(properties)
        self.geoms.append(geom_crs)
        if len(self.rows) >= self.batch:
            self._flush()

    def _flush(self, force: bool = False) -> None:
        import geopandas as gpd
        import pandas as pd
        import pyogrio

        if not self.rows and not (force and self.written == 0):
            return
        frame = pd.DataFrame(self.rows, columns=list(FIELDS)).astype(
            {"id": "int64", "area_m2": "float64", "perimeter_m": "float64", "score_mean": "float64", "score_max": "float64"}
        )
        gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(self.geoms, crs=self.crs))
        pyogrio.write_dataframe(
            gdf, self.path, layer=GPKG_LAYER, driver="GPKG", append=self.written > 0,
            promote_to_multi=True, geometry_type="MultiPolygon",
            layer_metadata=self.metadata if self.written == 0 else None,
            # GeoPackage 1.2 opens without warnings in the GDAL 3.6 of older QGIS releases too
            dataset_options={"VERSION": "1.2"} if self.written == 0 else None,
        )
        self.written += len(self.rows)
        self.rows, self.geoms = [], []

    def close(self) -> None:
        self._flush(force=True)
