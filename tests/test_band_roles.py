"""Band 4 after R, G, B: image values are NIR, a mask (even soft-edged) is transparency, whatever the tag says."""
import logging

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from deadtree.raster.band_mapping import looks_like_mask
from deadtree.raster.scene import open_scene
from tests.scenes import GEOTIFF_DIR

NAIP_TILE = GEOTIFF_DIR / "naip" / "eureka_2020_0.tif"


def _rewrite(src, dst, fourth: ColorInterp, band4=None):
    with rasterio.open(src) as ds:
        profile, pixels = ds.profile, ds.read()
    profile.update(photometric="minisblack")  # the colours as tags of their own, not a photometric RGB + alpha
    if band4 is not None:
        pixels[3] = band4
    with rasterio.open(dst, "w", **profile) as out:
        out.write(pixels)
        out.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, fourth]
    return dst


def soft_alpha(shape):
    alpha = np.full(shape, 255, dtype=np.uint8)
    alpha[:, : shape[1] // 3] = 0
    edge = shape[1] // 3
    for k, value in enumerate((64, 128, 192)):  # a feathered edge, three pixels wide
        alpha[:, edge + k] = value
    return alpha


def test_soft_edged_masks_are_masks_and_image_bands_are_not():
    rng = np.random.default_rng(0)
    assert looks_like_mask(soft_alpha((256, 256)))
    assert looks_like_mask(np.full((8, 8), 255, np.uint8))
    assert not looks_like_mask(rng.integers(20, 230, (256, 256)).astype(np.uint8))
    nir_with_collar = rng.integers(20, 230, (256, 256)).astype(np.uint8)
    nir_with_collar[:, :60] = 0  # a nodata collar does not make an image band a mask
    assert not looks_like_mask(nir_with_collar)


@pytest.mark.skipif(not NAIP_TILE.exists(), reason="the NAIP tiles of ../shared are not beside the clone")
def test_an_untagged_fourth_band_of_a_real_naip_tile_is_read_as_nir_and_said(tmp_path, caplog):
    path = _rewrite(NAIP_TILE, tmp_path / "undefined.tif", ColorInterp.undefined)
    with caplog.at_level(logging.INFO, logger="deadtree"):
        scene = open_scene(path)
    assert scene.band_index == {"R": 1, "G": 2, "B": 3, "NIR": 4} and scene.alpha_index is None
    assert "band 4 is untagged and holds image values: reading it as NIR" in caplog.text
    scene.close()


@pytest.mark.skipif(not NAIP_TILE.exists(), reason="the NAIP tiles of ../shared are not beside the clone")
@pytest.mark.parametrize("tag", [ColorInterp.alpha, ColorInterp.undefined])
def test_a_soft_edged_transparency_band_is_a_mask_and_no_polygon_lands_where_it_is_clear(tmp_path, toy_models, tag):
    from deadtree.pipeline import SegmentOptions, segment_scene

    with rasterio.open(NAIP_TILE) as ds:
        shape = (ds.height, ds.width)
    path = _rewrite(NAIP_TILE, tmp_path / "soft.tif", tag, band4=soft_alpha(shape))
    scene = open_scene(path)
    assert scene.alpha_index == 4 and "NIR" not in scene.band_index
    scene.close()
    # bright squares in the transparent part: a model that saw them would draw polygons there
    with rasterio.open(path, "r+") as ds:
        pixels = ds.read()
        pixels[:3, 100:120, 20:40] = 250
        ds.write(pixels)
    import geopandas

    result = segment_scene(path, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg",
                                                model="toy-rgb"))
    polygons = geopandas.read_file(tmp_path / "o.gpkg")
    with rasterio.open(path) as ds:
        clear_until_x = ds.transform.c + ds.transform.a * (shape[1] // 3)  # the transparent columns end here
    assert result.polygons == len(polygons) > 0  # the toy model still finds bright things where it can see
    assert (polygons.geometry.bounds.minx >= clear_until_x - 1e-6).all()
