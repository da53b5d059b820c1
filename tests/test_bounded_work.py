"""Work is bounded by the model grid, whatever the file's header claims about its pixels' size."""
import pytest
from affine import Affine

from deadtree.errors import InputError
from deadtree.pipeline import SegmentOptions, segment_scene
from tests.scenes import write_scene


def test_a_scene_far_coarser_than_the_model_is_refused_before_any_tile(tmp_path, toy_models):
    scene = tmp_path / "sentinel.tif"
    write_scene(scene, height=64, width=64, transform=Affine(10, 0, 500000, 0, -10, 6700000))
    with pytest.raises(InputError, match=r"10 m pixels are 16.7x coarser than the model's 0.6 m"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson"))
    huge = tmp_path / "huge-pixels.tif"  # 256 x 256 pixels declared 1000 m wide: 227,529 tiles at 0.6 m
    write_scene(huge, height=256, width=256, transform=Affine(1000, 0, 500000, 0, -1000, 6700000))
    with pytest.raises(InputError, match="coarser than the model"):
        segment_scene(huge, SegmentOptions(output=tmp_path / "h.geojson"))
    assert not list(tmp_path.glob("*.geojson"))


def test_the_resampled_grid_is_held_to_the_pixel_limit(tmp_path, toy_models):
    scene = tmp_path / "two-metre.tif"  # 3.3x coarser: allowed, but upsampled to 667 x 667
    write_scene(scene, height=200, width=200, transform=Affine(2.0, 0, 500000, 0, -2.0, 6700000))
    with pytest.raises(InputError, match=r"667 x 667 pixels, beyond the limit of 1e\+05"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", max_pixels=1e5))
    assert segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", max_pixels=1e6)).tiles > 0


def test_the_blending_strip_is_held_to_its_memory_limit(monkeypatch, tmp_path, toy_models):
    import deadtree.pipeline as pipeline

    # a 2,000,000 px wide strip of 1024 px tiles needed about 18 GB
    with pytest.raises(InputError, match=r"2000000 pixels wide .* 17.2 GB to blend; .* --tile-size 96 or less"):
        pipeline.check_strip_memory(2_000_000, 1024, "wide.tif")
    pipeline.check_strip_memory(100_000, 1024, "fine.tif")
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=100, width=300)
    monkeypatch.setattr(pipeline, "MAX_STRIP_BYTES", 300 * 64 * 9 - 1)  # the toy model's 64 px tiles
    with pytest.raises(InputError, match="300 pixels wide"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson"))


def _raster(path, count=4, dtype="uint8", transform=Affine(0.6, 0, 500000, 0, -0.6, 6700000), crs="EPSG:32633",
            gcps=None):
    import numpy as np
    import rasterio

    profile = dict(driver="GTiff", width=32, height=32, count=count, dtype=dtype, crs=crs, transform=transform)
    if gcps is not None:
        profile.pop("transform")
        profile.pop("crs")
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.ones((count, 32, 32), dtype=dtype))
        if gcps is not None:
            out.gcps = gcps
    return path


@pytest.mark.parametrize("kind, words", [
    ("bands", "has 40 bands, more than the 16 deadtree looks at"),
    ("complex", "holds complex numbers (complex64)"),
    ("gcps", "georeferenced by ground control points only: warp it first"),
    ("zero", "declares a pixel size of 0 x 0.6"),
    ("nan", "declares a pixel size of nan x 0.6"),
])
def test_headers_deadtree_cannot_use_are_refused_in_one_line(tmp_path, kind, words):
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    from deadtree.raster.scene import open_scene

    path = tmp_path / f"{kind}.tif"
    if kind == "bands":
        _raster(path, count=40)
    elif kind == "complex":
        _raster(path, count=1, dtype="complex64")
    elif kind == "gcps":
        points = [GroundControlPoint(r, c, 500000 + c, 6700000 - r) for r, c in ((0, 0), (0, 32), (32, 0))]
        _raster(path, gcps=(points, CRS.from_epsg(32633)))
    else:  # GDAL itself stores such a transform as a tie point: the header as a damaged file would show it
        import rasterio

        _raster(path)
        size = 0.0 if kind == "zero" else float("nan")
        real_open = rasterio.open

        class Damaged:
            def __init__(self, dataset):
                self._dataset = dataset

            def __getattr__(self, name):
                return getattr(self._dataset, name)

            transform = Affine(size, 0, 500000, 0, -0.6, 6700000)

        import deadtree.raster.scene as scene_module
        monkeypatch = pytest.MonkeyPatch()
        monkeypatch.setattr(scene_module.rasterio, "open", lambda p: Damaged(real_open(p)))
        try:
            with pytest.raises(InputError) as caught:
                open_scene(path)
        finally:
            monkeypatch.undo()
        assert words in str(caught.value)
        return
    with pytest.raises(InputError) as caught:
        open_scene(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_work_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path, toy_models):
    import os
    import socket
    import subprocess
    import sys

    from deadtree.outputs import OWNER_FILE, STALE_SECONDS

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    killed = tmp_path / ".deadtree-killed"
    killed.mkdir()
    (killed / OWNER_FILE).write_text(f"{socket.gethostname()} {gone}")
    running = tmp_path / ".deadtree-running"  # this process is alive: its folder stays
    running.mkdir()
    (running / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
    elsewhere = tmp_path / ".deadtree-elsewhere"  # another host's, recent: stays; an old one goes
    elsewhere.mkdir()
    (elsewhere / OWNER_FILE).write_text("another-host 1")
    old = tmp_path / ".deadtree-old"
    old.mkdir()
    os.utime(old, (0, 0))
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson"))
    left = sorted(p.name for p in tmp_path.glob(".deadtree-*"))
    assert left == [".deadtree-elsewhere", ".deadtree-running"] and STALE_SECONDS >= 3600


def test_a_blank_api_key_does_not_open_the_service_silently(caplog):
    pytest.importorskip("fastapi")
    import logging

    from service import server
    from service.settings import Settings

    with pytest.raises(InputError, match="DEADTREE_API_KEY is set but blank"):
        Settings.from_env({"DEADTREE_API_KEY": "  "})
    assert Settings.from_env({}).api_key is None  # unset: open, for loopback
    assert server._loopback("127.0.0.1") and server._loopback("::1") and server._loopback("localhost")
    assert not server._loopback("0.0.0.0") and not server._loopback("192.0.2.7")


def test_a_scene_gdal_reports_damaged_is_refused_and_nothing_is_written(tmp_path, toy_models):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    scene = tmp_path / "cut-jpeg.tif"
    pixels = np.random.default_rng(0).integers(0, 255, (4, 512, 512)).astype("uint8")
    with rasterio.open(scene, "w", driver="GTiff", width=512, height=512, count=4, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 6700000, 0.6, 0.6), compress="jpeg", tiled=True,
                       blockxsize=256, blockysize=256, interleave="pixel") as out:
        out.write(pixels)
        offset = int(out.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
        size = int(out.get_tag_item("BLOCK_SIZE_1_0", "TIFF", bidx=1))
    data = bytearray(scene.read_bytes())
    data[offset + size // 2: offset + size] = bytes(size - size // 2)  # the second half of one tile lost
    scene.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"cut-jpeg.tif is damaged: GDAL reported .*Premature end of JPEG file"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg"))
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".deadtree-*"))


def _scene_with_overviews(path, break_full_resolution=False):
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    pixels = np.random.default_rng(0).integers(40, 111, (4, 2048, 2048)).astype("uint8")
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=2048, count=4, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 6700000, 0.6, 0.6), compress="deflate", tiled=True) as out:
        out.write(pixels)
    with rasterio.open(path, "r+") as out:
        out.build_overviews([2, 4], Resampling.average)
    level = {} if break_full_resolution else {"overview_level": 0}
    with rasterio.open(path, **level) as ds:
        blocks = [(int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)),
                   int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))) for r in range(2) for c in range(2)]
    data = bytearray(path.read_bytes())
    for offset, size in blocks:
        data[offset:offset + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    return path


def test_broken_overviews_are_passed_over_for_the_full_resolution_data(tmp_path, toy_models, caplog):
    import logging

    scene = _scene_with_overviews(tmp_path / "broken-overviews.tif")
    with caplog.at_level(logging.WARNING, logger="deadtree"):
        result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", bands=("R", "G", "B", "NIR")))
    assert result.tiles > 0 and (tmp_path / "o.geojson").exists()
    assert "its overviews cannot be read" in caplog.text and "reading its full-resolution data" in caplog.text


def test_damaged_full_resolution_data_is_named_without_rasterio_s_pointer(tmp_path, toy_models):
    scene = _scene_with_overviews(tmp_path / "broken.tif", break_full_resolution=True)
    with pytest.raises(InputError) as caught:
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", bands=("R", "G", "B", "NIR")))
    assert "broken.tif" in str(caught.value) and "See previous exception" not in str(caught.value)


def test_a_stop_check_ends_a_run_within_one_model_call_and_nothing_is_published(tmp_path, toy_models):
    from deadtree.runtime.session import OnnxModel

    class Cancelled(Exception):
        pass

    calls = []
    real_run = OnnxModel.run

    def counted(self, batch):
        calls.append(len(batch))
        return real_run(self, batch)

    checks = []

    def stop():
        checks.append(len(calls))
        if len(checks) > 2:
            raise Cancelled

    scene = tmp_path / "scene.tif"
    write_scene(scene, height=400, width=400)
    mp = pytest.MonkeyPatch()
    mp.setattr(OnnxModel, "run", counted)
    try:
        with pytest.raises(Cancelled):
            segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", batch_size=1), stop=stop)
    finally:
        mp.undo()
    assert len(calls) == 2  # the third call was never made
    assert not (tmp_path / "o.geojson").exists() and not list(tmp_path.glob(".deadtree-*"))
