"""The outputs open in real QGIS (Debian's python3-qgis), in the right CRS and place, with all features."""
import json
import subprocess
from pathlib import Path

import pytest
import rasterio
from pyproj import Transformer

from deadtree.pipeline import SegmentOptions, segment_scene
from tests.scenes import write_scene

SYSTEM_PYTHON = "/usr/bin/python3"


def qgis_available() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not qgis_available(), reason="Debian's python3-qgis is not installed (.ci/run installs it)")


def test_geojson_and_gpkg_open_in_qgis_in_the_right_place(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene, crs="EPSG:3067", transform=rasterio.Affine(0.6, 0, 380000, 0, -0.6, 6680000))
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg"))
    probe = Path(__file__).with_name("qgis_probe.py")
    proc = subprocess.run([SYSTEM_PYTHON, str(probe), str(tmp_path / "o.geojson"), str(tmp_path / "o.gpkg")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    geojson, gpkg = json.loads(proc.stdout.strip().splitlines()[-1])
    assert geojson["valid"] and gpkg["valid"]
    assert geojson["crs"] == "EPSG:4326" and gpkg["crs"] == "EPSG:3067"
    assert geojson["features"] == gpkg["features"] == result.polygons > 0
    for layer in (geojson, gpkg):
        assert {"id", "area_m2", "perimeter_m", "score_mean", "score_max"} <= set(layer["fields"])
    with rasterio.open(scene) as ds:
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        west, south = to_ll.transform(ds.bounds.left, ds.bounds.bottom)
        east, north = to_ll.transform(ds.bounds.right, ds.bounds.top)
    for layer in (geojson, gpkg):
        x0, y0, x1, y1 = layer["extent_lonlat"]
        tol = 1e-4
        assert west - tol <= x0 <= x1 <= east + tol and south - tol <= y0 <= y1 <= north + tol


def test_gpkg_and_qml_beside_geojson_open_with_the_score_style(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg", qml=True))
    assert (tmp_path / "o.qml").is_file()
    bare = tmp_path / "bare.geojson"  # the same polygons with no .qml beside them: QGIS's plain default
    bare.write_bytes((tmp_path / "o.geojson").read_bytes())
    probe = Path(__file__).with_name("qgis_probe.py")
    layers = [tmp_path / "o.gpkg", tmp_path / "o.geojson", bare]
    proc = subprocess.run([SYSTEM_PYTHON, str(probe), *map(str, layers)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gpkg, geojson, plain = json.loads(proc.stdout.strip().splitlines()[-1])
    for layer in (gpkg, geojson):
        assert layer["valid"] and layer["default_style_loaded"], layer
        assert layer["renderer"] == "graduatedSymbol" and layer["class_attribute"] == "score_mean", layer
        assert layer["classes"] == 5
    assert plain["renderer"] == "singleSymbol" and not plain["default_style_loaded"]
