import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp as CI

from deadtree.bands import parse_band_list
from deadtree.errors import InputError
from deadtree.raster.reader import overview
from deadtree.raster.scene import open_scene
from tests.scenes import write_scene

RGBA = [CI.red, CI.green, CI.blue, CI.alpha]


def test_nir_tagged_as_alpha_is_read_as_nir(tmp_path):
    write_scene(tmp_path / "s.tif", colorinterp=RGBA)
    scene = open_scene(tmp_path / "s.tif")
    assert scene.band_index == {"R": 1, "G": 2, "B": 3, "NIR": 4}
    assert scene.alpha_index is None


def test_real_alpha_mask_is_a_mask(tmp_path):
    write_scene(tmp_path / "s.tif", bands=3, alpha_mask=True, colorinterp=[CI.red, CI.green, CI.blue, CI.alpha])
    scene = open_scene(tmp_path / "s.tif")
    assert scene.band_index == {"R": 1, "G": 2, "B": 3}
    assert scene.alpha_index == 4
    _, valid, _ = overview(scene, ("R", "G", "B"))
    assert not valid[:, : valid.shape[1] // 4 - 1].any() and valid[:, valid.shape[1] // 2:].all()


def test_rgb_plus_real_alpha_mask_in_four_band_file_is_a_mask(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, bands=3, alpha_mask=True, colorinterp=RGBA)
    assert open_scene(path).alpha_index == 4


def test_band_override_and_untagged_guess(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, colorinterp=[CI.undefined] * 4)
    assert open_scene(path).band_index == {"R": 1, "G": 2, "B": 3, "NIR": 4}
    scene = open_scene(path, parse_band_list("nir,red,green,blue"))
    assert scene.band_index == {"NIR": 1, "R": 2, "G": 3, "B": 4}
    with pytest.raises(InputError, match="names 3 bands but the scene has 4"):
        open_scene(path, ("R", "G", "B"))


def test_a_band_marked_dash_is_left_unread(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, bands=5, colorinterp=[CI.undefined] * 5)
    scene = open_scene(path, parse_band_list("B,G,R,-,NIR", for_scene=True))
    assert scene.band_index == {"B": 1, "G": 2, "R": 3, "NIR": 5}
    with pytest.raises(InputError):  # a model's own bands never skip
        parse_band_list("R,G,B,-")
    with pytest.raises(InputError, match="empty"):
        parse_band_list("-,-", for_scene=True)


def test_bands_can_name_an_untagged_alpha_mask(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, bands=3, alpha_mask=True, colorinterp=[CI.undefined] * 4)
    scene = open_scene(path, parse_band_list("R,G,B,alpha", for_scene=True))
    assert scene.band_index == {"R": 1, "G": 2, "B": 3} and scene.alpha_index == 4
    _, valid, _ = overview(scene, ("R", "G", "B"))
    assert not valid[:, : valid.shape[1] // 4 - 1].any() and valid[:, valid.shape[1] // 2:].all()
    with pytest.raises(InputError, match="more than one alpha"):
        parse_band_list("R,G,B,alpha,a", for_scene=True)


def test_parse_band_list_rejects_nonsense():
    with pytest.raises(InputError):
        parse_band_list("R,G,X")
    with pytest.raises(InputError):
        parse_band_list("R,R,G")


def test_edge_connected_fill_is_nodata_but_dark_pixels_inside_are_not(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, border=20, border_value=0)
    with rasterio.open(path, "r+") as ds:  # a black patch inside the image is image, not nodata
        ds.write(np.zeros((4, 10, 10), np.uint8), window=rasterio.windows.Window(100, 100, 10, 10))
    scene = open_scene(path)
    _, valid, _ = overview(scene, ("R", "G", "B", "NIR"))
    assert not valid[:20].any() and not valid[:, -20:].any()
    assert valid[100:110, 100:110].all()


def test_ground_resolution_of_lonlat_scene_is_in_metres(tmp_path):
    path = tmp_path / "s.tif"
    lat = 60.0
    transform = Affine(0.6 / (111_320 * np.cos(np.radians(lat))), 0, 25.0, 0, -0.6 / 111_320, lat)
    write_scene(path, crs="EPSG:4326", transform=transform)
    gx, gy = open_scene(path).gsd_m
    assert gx == pytest.approx(0.6, rel=0.01) and gy == pytest.approx(0.6, rel=0.01)


def test_feet_are_converted_to_metres(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, crs="EPSG:2227", transform=Affine(2.0, 0, 6_000_000, 0, -2.0, 2_000_000))  # US survey ft
    gx, _ = open_scene(path).gsd_m
    assert gx == pytest.approx(2.0 * 0.3048006, rel=1e-4)


def web_mercator_transform(lon: float, lat: float, ground_m: float) -> Affine:
    """A Web Mercator geotransform whose pixels are ground_m on the ground at (lon, lat)."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    units = ground_m / np.cos(np.radians(lat))  # Mercator stretches both axes by 1 / cos(latitude)
    return Affine(units, 0, x, 0, -units, y)


def test_web_mercator_pixels_are_measured_on_the_ground(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, crs="EPSG:3857", transform=web_mercator_transform(-124.1, 41.0, 0.6))
    scene = open_scene(path)
    assert scene.gsd_m[0] == pytest.approx(0.6, rel=0.005) and scene.gsd_m[1] == pytest.approx(0.6, rel=0.005)
    assert scene.metres_per_unit[0] == pytest.approx(np.cos(np.radians(41.0)), rel=0.005)


def test_a_mapping_crs_keeps_its_own_unit(tmp_path):
    path = tmp_path / "s.tif"
    write_scene(path, crs="EPSG:32610", transform=Affine(0.6, 0, 400_000, 0, -0.6, 4_500_000))  # UTM, k ~ 0.9997
    scene = open_scene(path)
    assert scene.gsd_m == (0.6, 0.6) and scene.metres_per_unit == (1.0, 1.0)


def test_edge_fill_coarse_check_agrees_with_the_pixel_lookup():
    from deadtree.raster.validity import EdgeFillMap

    mask = np.zeros((40, 50), bool)
    mask[:6, :3] = True  # a collar in the top-left corner of a 400 x 500 scene
    fill = EdgeFillMap(mask, 400, 500)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        r0, c0 = rng.integers(0, 380), rng.integers(0, 480)
        rows, cols = np.arange(r0, r0 + 20) + 0.5, np.arange(c0, c0 + 20) + 0.5
        touches = fill.touches(rows, cols)
        assert touches == fill.lookup(rows, cols).any()
        seen.add(touches)
    assert seen == {True, False}


def test_a_finer_scene_is_averaged_onto_the_model_grid(tmp_path):
    from deadtree.raster.grid import model_grid
    from deadtree.raster.reader import WindowReader, window_resampling

    coarse = np.random.default_rng(3).integers(0, 256, size=(4, 64, 64)).astype(np.uint8)
    fine = coarse.repeat(2, axis=1).repeat(2, axis=2)  # every 0.6 m pixel as four 0.3 m pixels
    path = tmp_path / "fine.tif"
    with rasterio.open(path, "w", driver="GTiff", width=128, height=128, count=4, dtype="uint8",
                       crs="EPSG:32610", transform=Affine(0.3, 0, 400_000, 0, -0.3, 4_500_000),
                       ALPHA="UNSPECIFIED") as ds:  # tagged alpha, GDAL's resampled reads skip pixels whose NIR is 0
        ds.write(fine)
        ds.set_band_description(4, "nir")
    scene = open_scene(path)
    grid = model_grid(scene.width, scene.height, scene.gsd_m, 0.6)
    assert (grid.width, grid.height) == (64, 64)
    pixels, valid = WindowReader(scene, ("R", "G", "B", "NIR"), grid, None).read(0, 0, 64, 64)
    # each model pixel is the mean of the scene pixels it covers: here exactly the 0.6 m original
    assert np.array_equal(pixels, coarse) and valid.all()
    assert window_resampling(model_grid(100, 100, (1.0, 1.0), 0.6)).name == "bilinear"  # enlarged: interpolated
    assert window_resampling(model_grid(100, 100, (0.6, 0.6), 0.6)).name == "nearest"  # as it is
