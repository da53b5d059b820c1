"""Scenes held decoded (deadtree.raster.resident) must give exactly what streaming them through GDAL gives."""
import json

import numpy as np
import pytest
import rasterio
from affine import Affine

import deadtree.raster.read_policy as read_policy
import deadtree.raster.resident as resident
from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.raster.resident import nearest_decimation, read_resident, swept_decimation
from deadtree.raster.scene import decimated_shape, open_scene, read_decimated
from tests.scenes import Disc, write_scene


def random_file(path, height, width, interleave="pixel", tiled=True, strip_rows=None):
    data = np.random.default_rng(height * width).integers(0, 256, (4, height, width), dtype=np.uint8)
    profile = dict(driver="GTiff", height=height, width=width, count=4, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(0.6, 0, 500000, 0, -0.6, 6700000), interleave=interleave, compress="deflate")
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    elif strip_rows:
        profile.update(blockysize=strip_rows)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


@pytest.mark.parametrize("height,width,interleave,tiled", [
    (1500, 1100, "pixel", True), (2049, 1025, "band", True), (1025, 3001, "pixel", False), (4000, 333, "pixel", True),
    (700, 500, "pixel", True),
    # sides whole multiples of the decimated ones: evenly spaced picks, taken as one strided copy
    (2048, 1024, "pixel", True), (768, 3072, "band", False)])
def test_decimation_picks_the_pixels_gdal_picks(tmp_path, height, width, interleave, tiled):
    data = random_file(tmp_path / "s.tif", height, width, interleave, tiled)
    scene = open_scene(tmp_path / "s.tif")
    try:
        by_gdal = read_decimated(scene, tuple(scene.band_index))
    finally:
        scene.close()
    assert by_gdal.shape[1:] == decimated_shape(width, height)
    assert np.array_equal(nearest_decimation(data, *by_gdal.shape[1:]), by_gdal)


@pytest.mark.parametrize("height,width,interleave,tiled,sweep_bytes", [
    (3000, 700, "pixel", True, 256 * 700 * 4), (2500, 2100, "band", True, 512 * 2100 * 4),
    (1500, 1100, "pixel", False, 100 * 1100 * 4), (5000, 300, "pixel", True, 256 * 300 * 4),
    (1500, 1300, "pixel", True, 2 * 256 * 256 * 4)])
def test_a_sweep_in_pieces_picks_the_pixels_gdal_picks(tmp_path, monkeypatch, height, width, interleave, tiled,
                                                       sweep_bytes):
    # bands of a few block rows; the last budget holds less than one block row of the full width, so its bands
    # are cut across into pieces of two 256 px blocks
    random_file(tmp_path / "s.tif", height, width, interleave, tiled)
    monkeypatch.setattr(resident, "SWEEP_BYTES", sweep_bytes)
    scene = open_scene(tmp_path / "s.tif")
    try:
        by_gdal = read_decimated(scene, tuple(scene.band_index))
        swept = swept_decimation(scene, [1, 2, 3, 4], *by_gdal.shape[1:], threads=2)
    finally:
        scene.close()
    assert swept.alpha is None
    assert np.array_equal(swept.pixels, by_gdal)


def test_bands_without_a_picked_row_are_not_read(tmp_path, monkeypatch):
    random_file(tmp_path / "s.tif", 4100, 60, tiled=False, strip_rows=1)  # 4100 rows -> 1024: every 4th row
    monkeypatch.setattr(resident, "SWEEP_BYTES", 2 * 60 * 4)  # bands of two one-row strips
    scene = open_scene(tmp_path / "s.tif")
    reads = []
    real_open = rasterio.open

    def counting_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        real_read = handle.read
        handle.read = lambda *a, **k: reads.append(k["window"]) or real_read(*a, **k)
        return handle

    monkeypatch.setattr(resident.rasterio, "open", counting_open)
    try:
        swept = swept_decimation(scene, [1, 2, 3, 4], *decimated_shape(60, 4100), threads=2)
        by_gdal = read_decimated(scene, tuple(scene.band_index))
    finally:
        scene.close()
    assert np.array_equal(swept.pixels, by_gdal)
    assert len(reads) < 4100 // 2 * 0.6 and all(w.height == 1 for w in reads)  # only the picked rows' bands


def test_a_swept_alpha_band_is_kept_apart(tmp_path, monkeypatch):
    path = tmp_path / "alpha.tif"
    write_scene(path, height=1500, width=1300, bands=3, alpha_mask=True, tiled=True)
    monkeypatch.setattr(resident, "SWEEP_BYTES", 128 * 1300 * 4)
    scene = open_scene(path)
    try:
        swept = swept_decimation(scene, [1, 2, 3], *decimated_shape(1300, 1500), threads=2)
        assert np.array_equal(swept.pixels, read_decimated(scene, ("R", "G", "B")))
        assert np.array_equal(swept.alpha, nearest_decimation(scene.dataset.read(4), *decimated_shape(1300, 1500)))
    finally:
        scene.close()


def test_the_threaded_read_is_the_plain_read_with_its_alpha_apart(tmp_path):
    path = tmp_path / "alpha.tif"
    write_scene(path, height=500, width=700, bands=3, alpha_mask=True, tiled=True)
    scene = open_scene(path)
    try:
        held = read_resident(scene, scene.indexes(("R", "G", "B")), threads=2)
        assert held is not None and scene.alpha_index == 4
        assert np.array_equal(held.pixels, scene.dataset.read([1, 2, 3]))
        assert np.array_equal(held.alpha, scene.dataset.read(4))
    finally:
        scene.close()


def test_large_scenes_and_internal_masks_are_left_to_stream(tmp_path, monkeypatch):
    plain, masked = tmp_path / "plain.tif", tmp_path / "masked.tif"
    write_scene(plain)
    write_scene(masked)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as ds:
        ds.write_mask(np.full((ds.height, ds.width), 255, np.uint8))
    for path, limit, held in ((plain, read_policy.HOLD_WHOLE_BYTES, True), (plain, 300 * 260 * 4 - 1, False),
                              (masked, read_policy.HOLD_WHOLE_BYTES, False)):
        monkeypatch.setattr(read_policy, "HOLD_WHOLE_BYTES", limit)
        scene = open_scene(path)
        try:
            assert (read_resident(scene, [1, 2, 3, 4], threads=2) is not None) == held, (path.name, limit)
        finally:
            scene.close()


SCENES = [
    pytest.param(dict(height=1300, width=1100), id="larger-than-the-decimated-read"),
    pytest.param(dict(border=30, border_value=0, nodata=0), id="nodata-collar"),
    pytest.param(dict(border=30, border_value=255), id="white-edge-fill"),
    pytest.param(dict(bands=3, alpha_mask=True, tiled=True), id="alpha"),
    pytest.param(dict(dtype="uint16", tiled=True), id="uint16"),
    pytest.param(dict(dtype="float32"), id="float32"),
]


@pytest.mark.parametrize("kw", SCENES)
def test_held_and_streamed_scenes_give_the_same_outputs(tmp_path, toy_models, monkeypatch, kw):
    scene = tmp_path / "scene.tif"
    write_scene(scene, discs=[Disc(60, 60, 6), Disc(150, 120, 8), Disc(250, 200, 5)], **kw)
    answers, held = [], []

    decide = read_policy.decide

    def spied(*args, **kwargs):
        policy = decide(*args, **kwargs)
        held.append(policy.hold)
        return policy

    monkeypatch.setattr(read_policy, "decide", spied)
    for limit in (read_policy.HOLD_WHOLE_BYTES, 0):
        monkeypatch.setattr(read_policy, "HOLD_WHOLE_BYTES", limit)
        out = tmp_path / f"held{limit}"
        out.mkdir()
        result = segment_scene(scene, SegmentOptions(output=out / "o.geojson", probabilities=out / "p.tif"))
        with rasterio.open(out / "p.tif") as ds:
            codes = ds.read(1)
        features = json.loads((out / "o.geojson").read_text())["features"]
        answers.append((result.polygons, codes, [f["geometry"] for f in features]))
    (held_count, held_codes, held_shapes), (count, codes, shapes) = answers
    assert held == [True, False]
    assert held_count == count >= 2
    assert np.array_equal(held_codes, codes)
    assert held_shapes == shapes


def test_windows_where_nothing_can_be_invalid_share_one_read_only_mask(tmp_path):
    from deadtree.raster.grid import identity_grid
    from deadtree.raster.reader import WindowReader

    plain, with_nodata = tmp_path / "plain.tif", tmp_path / "nodata.tif"
    write_scene(plain)
    write_scene(with_nodata, border=20, border_value=0, nodata=0)
    for path, shared in ((plain, True), (with_nodata, False)):
        scene = open_scene(path)
        try:
            reader = WindowReader(scene, ("R", "G", "B", "NIR"), identity_grid(scene.width, scene.height), None)
            _, valid = reader.read(0, 0, 64, 80)
            assert valid.shape == (64, 80)
            assert (not valid.flags.writeable and valid.all()) == shared
            assert (reader.read(64, 0, 64, 80)[1] is valid) == shared  # one array for every such window
            if not shared:
                assert not valid[:20].any() and valid[20:, 20:].all()
        finally:
            scene.close()
