"""The QGIS style: a well-formed graduated QML, stored as the GeoPackage's default and beside the GeoJSON on request.

That QGIS itself applies it is checked in tests/test_qgis.py (needs Debian's python3-qgis).
"""
import sqlite3
import xml.etree.ElementTree as ET

import pyogrio

from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.vector.style import add_default_style, qml, write_qml
from tests.scenes import write_scene


def test_qml_grades_outline_colour_by_score_mean_from_yellow_to_red(tmp_path):
    root = ET.fromstring(write_qml(tmp_path / "s.qml").read_text(encoding="utf-8"))
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "graduatedSymbol" and renderer.get("attr") == "score_mean"
    ranges = renderer.findall("ranges/range")
    assert [float(r.get("lower")) for r in ranges] == [0.0, 0.6, 0.7, 0.8, 0.9] and ranges[-1].get("upper") == "1.0"
    symbols = renderer.findall("symbols/symbol")
    outlines = [s.find("layer/Option/Option[@name='outline_color']").get("value") for s in symbols]
    fills = [s.find("layer/Option/Option[@name='color']").get("value") for s in symbols]
    assert outlines[0] == "255,255,0,255" and outlines[-1].startswith("215,0,0")
    assert all(f.endswith(",50") for f in fills)  # a light tint, so the crown stays visible


def test_segment_stores_the_default_style_in_the_gpkg_and_qml_only_on_request(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg"))
    assert "qml" not in result.outputs and not (tmp_path / "o.qml").exists()
    with sqlite3.connect(tmp_path / "o.gpkg") as db:
        rows = db.execute("SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, useAsDefault, "
                          "styleQML FROM layer_styles").fetchall()
    db.close()
    assert rows == [("", "", "dead_trees", "geom", 1, qml())]
    assert len(pyogrio.read_dataframe(tmp_path / "o.gpkg", layer="dead_trees")) == result.polygons

    result = segment_scene(scene, SegmentOptions(output=tmp_path / "b.geojson", qml=True))
    assert result.outputs["qml"] == tmp_path / "b.qml" and (tmp_path / "b.qml").read_text(encoding="utf-8") == qml()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deadtree")]


def test_restyling_leaves_one_default_per_layer(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    gpkg = tmp_path / "t.gpkg"
    frame = gpd.GeoDataFrame({"score_mean": [0.7]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:3067")
    frame.to_file(gpkg, layer="dead_trees")
    add_default_style(gpkg, "dead_trees")
    add_default_style(gpkg, "dead_trees")
    with sqlite3.connect(gpkg) as db:
        defaults = db.execute("SELECT useAsDefault FROM layer_styles ORDER BY id").fetchall()
    db.close()
    assert defaults == [(0,), (1,)]
