"""End to end on real GeoTIFFs with the shipped models (../shared beside the clone; skipped where absent)."""

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape

from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.runtime.registry import list_models
from tests.geojson_rules import load_rfc7946


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv("DEADTREE_MODELS", raising=False)
    models = {m.info.name: m for m in list_models() if m.info.task == "segmenter" and m.info.extra.get("default")}
    if not models:
        pytest.skip("no shipped default segmenters in models/")
    return models


def lonlat_footprint(path):
    with rasterio.open(path) as ds:
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        return shapely.transform(box(*ds.bounds), lambda x, y: to_ll.transform(x, y), interleaved=False)


def test_naip_tile_runs_the_rgbn_model_with_nir_from_the_alpha_tagged_band(tmp_path, geotiff_dir, shipped):
    scene = geotiff_dir / "naip" / "eureka_2020_0.tif"
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg"))
    model = shipped[result.model]
    assert model.info.bands == ("R", "G", "B", "NIR")
    doc = load_rfc7946(tmp_path / "o.geojson")
    footprint = lonlat_footprint(scene)
    assert all(footprint.contains(shape(f["geometry"])) for f in doc["features"])
    info = pyogrio.read_info(tmp_path / "o.gpkg", layer="dead_trees")
    assert info["crs"] == "EPSG:26910" and info["features"] == len(doc["features"]) == result.polygons


def test_rgb_scene_at_10cm_runs_the_rgb_model(tmp_path, geotiff_dir, shipped):
    scene = geotiff_dir / "OSBS_029.tif"
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", probabilities=tmp_path / "p.tif"))
    assert shipped[result.model].info.bands == ("R", "G", "B")
    load_rfc7946(tmp_path / "o.geojson")
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert (ds.width, ds.height) == (400, 400)


def test_shifting_the_tile_grid_by_half_a_tile_keeps_the_mask(tmp_path, geotiff_dir, shipped):
    """Pooled over the real NAIP tiles: the mask from a grid offset by half a tile matches at IoU >= 0.95."""
    inter = union = 0
    scenes = sorted((geotiff_dir / "naip").glob("*.tif"))
    for scene in scenes:
        masks = []
        for offset in (0, None):
            options = SegmentOptions(output=tmp_path / "o.geojson", probabilities=tmp_path / "p.tif")
            model = shipped[next(iter(shipped))]
            tile = model.info.tile_size
            options.grid_offset = 0 if offset == 0 else tile // 2
            result = segment_scene(scene, options)
            with rasterio.open(tmp_path / "p.tif") as ds:
                codes = ds.read(1)
            masks.append((codes != 255) & (codes >= np.ceil(shipped[result.model].info.threshold * 254)))
        inter += (masks[0] & masks[1]).sum()
        union += (masks[0] | masks[1]).sum()
    assert union > 100, "the model should find some dead trees on 31 NAIP tiles"
    assert inter / union >= 0.95
