"""Checks of the RFC 7946 rules a GeoJSON writer can get wrong."""
from __future__ import annotations

import json
from pathlib import Path

import shapely
from shapely.geometry import shape


def load_rfc7946(path: Path) -> dict:
    doc = json.loads(Path(path).read_text())
    assert doc["type"] == "FeatureCollection"
    assert "crs" not in doc, "RFC 7946 removed the crs member"
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        geom = feature["geometry"]
        assert geom["type"] in ("Polygon", "MultiPolygon")
        polygons = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for rings in polygons:
            for i, ring in enumerate(rings):
                assert ring[0] == ring[-1] and len(ring) >= 4
                for lon, lat in ring:
                    assert -180 <= lon <= 180 and -90 <= lat <= 90
                    assert _decimals(lon) <= 7 and _decimals(lat) <= 7
                ccw = shapely.LinearRing(ring).is_ccw
                assert ccw == (i == 0), "exterior rings counter-clockwise, holes clockwise"
        assert shape(geom).is_valid
    return doc


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0
