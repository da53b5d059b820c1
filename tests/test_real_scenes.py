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


def parent_of(name: str) -> str:
    """The fp32 model a variant was made from (a model that is no variant is its own parent)."""
    return next((m.info.extra.get("variant_of") or name for m in list_models() if m.info.name == name), name)


def lonlat_footprint(path):
    """The scene's outline in lon/lat, densified (straight UTM edges are curves in lon/lat) with ~1 cm of slack
    for the 7-decimal coordinates."""
    with rasterio.open(path) as ds:
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        dense = shapely.segmentize(box(*ds.bounds), abs(ds.res[0]))
        return shapely.transform(dense, lambda x, y: to_ll.transform(x, y), interleaved=False).buffer(1e-7)


def test_naip_tile_runs_the_rgbn_model_with_nir_from_the_alpha_tagged_band(tmp_path, geotiff_dir, shipped):
    scene = geotiff_dir / "naip" / "eureka_2020_0.tif"
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg"))
    model = shipped[parent_of(result.model)]
    assert model.info.bands == ("R", "G", "B", "NIR")
    if any(m.info.name == f"{model.info.name}-int8" for m in list_models()):
        assert result.model == f"{model.info.name}-int8"  # on a CPU the checked int8 variant runs by default
    doc = load_rfc7946(tmp_path / "o.geojson")
    footprint = lonlat_footprint(scene)
    assert all(footprint.contains(shape(f["geometry"])) for f in doc["features"])
    info = pyogrio.read_info(tmp_path / "o.gpkg", layer="dead_trees")
    assert info["crs"] == "EPSG:26910" and info["features"] == len(doc["features"]) == result.polygons


def test_rgb_scene_at_10cm_runs_the_rgb_model(tmp_path, geotiff_dir, shipped):
    scene = geotiff_dir / "OSBS_029.tif"
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", probabilities=tmp_path / "p.tif"))
    assert shipped[parent_of(result.model)].info.bands == ("R", "G", "B")
    load_rfc7946(tmp_path / "o.geojson")
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert (ds.width, ds.height) == (400, 400)


def test_shifting_the_tile_grid_by_half_a_tile_keeps_the_mask(tmp_path, usa_dir, shipped):
    """Real NAIP forest scenes (the validation frames with the most dead trees, written as GeoTIFFs): the mask
    from a grid offset by half a tile matches the unshifted one at pooled pixel IoU >= 0.95."""
    from deadtree.evaluation.domain_study import write_frame_scene
    from deadtree.training.frames import load_frames

    model = shipped["deadtree-rgbn"] if "deadtree-rgbn" in shipped else next(iter(shipped.values()))
    frames = [f for f in load_frames(usa_dir, model.info.bands) if f.group in ("ar041", "tx071")]
    frames = sorted(frames, key=lambda f: -f.mask.mean())[:4]
    inter = union = 0
    for frame in frames:
        scene = write_frame_scene(frame.image, model.info.bands, tmp_path / "scene.tif")
        masks = []
        for offset in (0, model.info.tile_size // 2):
            options = SegmentOptions(output=tmp_path / "o.geojson", probabilities=tmp_path / "p.tif",
                                     model=model.info.name, grid_offset=offset)
            segment_scene(scene, options)
            with rasterio.open(tmp_path / "p.tif") as ds:
                codes = ds.read(1)
            masks.append((codes != 255) & (codes >= np.ceil(model.info.threshold * 254)))
        inter += (masks[0] & masks[1]).sum()
        union += (masks[0] | masks[1]).sum()
    assert union > 1000, "the model should find dead trees on these frames"
    assert inter / union >= 0.95
