import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import box, shape
import shapely

from deadtree.errors import InputError, ModelError
from deadtree.pipeline import SegmentOptions, segment_scene
from tests.geojson_rules import load_rfc7946
from tests.scenes import Disc, write_scene


def run(tmp_path, scene, **kw):
    options = SegmentOptions(output=tmp_path / "out.geojson", **kw)
    return segment_scene(scene, options)


def footprint_lonlat(path):
    with rasterio.open(path) as ds:
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        return shapely.transform(box(*ds.bounds), lambda x, y: to_ll.transform(x, y), interleaved=False)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


SCENES = [
    pytest.param(dict(crs="EPSG:32633"), id="utm-uint8-rgbn"),
    pytest.param(dict(crs="EPSG:32633", bands=3), id="utm-rgb"),
    pytest.param(dict(crs="EPSG:3067", dtype="uint16", tiled=True,
                      transform=Affine(0.6, 0, 380000, 0, -0.6, 6680000)), id="tm35fin-uint16-tiled"),
    pytest.param(dict(crs="EPSG:4326", transform=Affine(0.6 / 55660, 0, 25.0, 0, -0.6 / 111320, 60.0)),
                 id="lonlat"),
    pytest.param(dict(dtype="float32"), id="float32"),
]


@pytest.mark.parametrize("kw", SCENES)
def test_polygons_land_on_the_dead_trees_in_lonlat(tmp_path, toy_models, kw):
    scene = tmp_path / "scene.tif"
    truth = write_scene(scene, **kw)
    result = run(tmp_path, scene, gpkg=tmp_path / "out.gpkg", probabilities=tmp_path / "p.tif")
    doc = load_rfc7946(tmp_path / "out.geojson")
    n_discs = len([1 for _ in doc["features"]])
    assert result.polygons == n_discs >= 3
    assert result.model == ("toy-rgb" if kw.get("bands") == 3 else "toy-rgbn")
    footprint = footprint_lonlat(scene)
    for f in doc["features"]:
        assert footprint.contains(shape(f["geometry"]))
        assert set(f["properties"]) == {"id", "area_m2", "perimeter_m", "score_mean", "score_max"}
        assert 0.5 <= f["properties"]["score_max"] <= 1
    assert doc["deadtree"]["model"] == result.model and doc["deadtree"]["source"] == "scene.tif"
    # polygons burned back onto the scene grid (via the GPKG in the scene's CRS) cover the discs
    with rasterio.open(scene) as ds:
        gdf = pyogrio.read_dataframe(tmp_path / "out.gpkg", layer="dead_trees")
        assert gdf.crs.to_epsg() == ds.crs.to_epsg() and gdf.crs.to_epsg() is not None
        burned = rasterize(gdf.geometry, out_shape=truth.shape, transform=ds.transform).astype(bool)
    assert iou(burned, truth) > 0.6
    # area_m2 is in square metres, also for lon/lat scenes
    assert sum(f["properties"]["area_m2"] for f in doc["features"]) == pytest.approx(burned.sum() * 0.36, rel=0.1)
    with rasterio.open(tmp_path / "p.tif") as prob:
        assert prob.crs == rasterio.open(scene).crs
        assert prob.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_rasterised_polygons_reproduce_the_thresholded_mask(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=400, width=300)
    run(tmp_path, scene, gpkg=tmp_path / "o.gpkg", probabilities=tmp_path / "p.tif", simplify=0.0, min_area=0.0)
    with rasterio.open(tmp_path / "p.tif") as ds:
        codes = ds.read(1)
        mask = (codes != 255) & (codes >= 127)
        gdf = pyogrio.read_dataframe(tmp_path / "o.gpkg", layer="dead_trees")
        burned = rasterize(gdf.geometry, out_shape=mask.shape, transform=ds.transform).astype(bool)
    np.testing.assert_array_equal(burned, mask)
    # with the default simplification the agreement stays close
    run(tmp_path, scene, gpkg=tmp_path / "o.gpkg")
    gdf = pyogrio.read_dataframe(tmp_path / "o.gpkg", layer="dead_trees")
    with rasterio.open(tmp_path / "p.tif") as ds:
        burned = rasterize(gdf.geometry, out_shape=mask.shape, transform=ds.transform).astype(bool)
    assert iou(burned, mask) > 0.9


def test_nodata_border_and_edge_fill_give_no_polygons(tmp_path, toy_models):
    for value, nodata in ((255, None), (0, 0), (255, 255)):
        scene = tmp_path / f"scene{value}{nodata}.tif"
        discs = [Disc(60, 60, 5), Disc(150, 150, 5)]
        write_scene(scene, border=30, border_value=value, nodata=nodata, discs=discs)
        result = run(tmp_path, scene, probabilities=tmp_path / "p.tif")
        # a white (255) collar would be 'dead' to the toy model: only the two discs may come out
        assert result.polygons == 2, (value, nodata)
        with rasterio.open(tmp_path / "p.tif") as ds:
            codes = ds.read(1)
        assert (codes[:30] == 255).all() and (codes[:, -30:] == 255).all()


def test_all_nodata_tiles_are_not_sent_to_the_model(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=400, width=400, border=150, border_value=0, nodata=0)
    result = run(tmp_path, scene)
    assert result.tiles_skipped > 0 and result.tiles_skipped < result.tiles


def test_the_result_names_the_model_file_that_ran(tmp_path, toy_models):
    """Benchmarks time that file again on its own: the default chosen by the scene's bands, or a file given."""
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=300, width=300)
    assert run(tmp_path, scene).model_path == toy_models / "toy-rgbn.onnx"
    elsewhere = tmp_path / "other" / "mine.onnx"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((toy_models / "toy-rgbn.onnx").read_bytes())
    assert run(tmp_path, scene, model=str(elsewhere)).model_path == elsewhere


def test_fine_resolution_scene_is_resampled_and_mapped_back(tmp_path, toy_models):
    # a 0.25 m scene (Finnish orthophoto style) into the 0.6 m model
    scene = tmp_path / "fine.tif"
    discs = [Disc(100, 100, 14), Disc(300, 250, 12), Disc(420, 120, 16)]
    truth = write_scene(scene, height=520, width=400, crs="EPSG:3067",
                        transform=Affine(0.25, 0, 380000, 0, -0.25, 6680000), discs=discs)
    result = run(tmp_path, scene, probabilities=tmp_path / "p.tif", gpkg=tmp_path / "o.gpkg")
    assert result.polygons == 3
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert (ds.width, ds.height) == (400, 520)  # back on the scene's own grid
        mask = ds.read(1)
        mask = (mask != 255) & (mask >= 127)
    assert iou(mask, truth) > 0.7
    gdf = pyogrio.read_dataframe(tmp_path / "o.gpkg", layer="dead_trees")
    true_area = truth.sum() * 0.25 * 0.25
    assert gdf.area_m2.sum() == pytest.approx(true_area, rel=0.35)


def test_web_mercator_scene_gives_ground_areas(tmp_path, toy_models):
    from tests.test_scene import web_mercator_transform

    discs = [Disc(100, 100, 14), Disc(200, 160, 12)]
    utm, mercator = tmp_path / "utm.tif", tmp_path / "mercator.tif"
    write_scene(utm, crs="EPSG:32610", transform=Affine(0.6, 0, 400_000, 0, -0.6, 4_540_000), discs=discs)
    write_scene(mercator, crs="EPSG:3857", transform=web_mercator_transform(-124.1, 41.0, 0.6), discs=discs)
    areas = []
    for scene in (utm, mercator):
        result = segment_scene(scene, SegmentOptions(output=tmp_path / f"{scene.stem}.geojson"))
        assert result.polygons == 2
        areas.append(result.area_m2)
    # without the ground scale the Mercator pixels were read as 0.79 m: areas 1.75x too large
    assert areas[1] == pytest.approx(areas[0], rel=0.03)


def test_tile_grid_shift_does_not_change_the_answer(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=300, width=300)
    masks = []
    for offset in (0, 24):
        run(tmp_path, scene, probabilities=tmp_path / f"p{offset}.tif", grid_offset=offset)
        with rasterio.open(tmp_path / f"p{offset}.tif") as ds:
            codes = ds.read(1).astype(int)
        masks.append(codes)
    assert np.abs(masks[0] - masks[1]).max() <= 1  # blending leaves no trace of the grid


def test_outputs_are_all_or_nothing(tmp_path, toy_models, monkeypatch):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    import deadtree.pipeline as pipeline

    def broken(*args, **kwargs):
        raise InputError("disk on fire")

    monkeypatch.setattr(pipeline, "_vectorise", broken)
    with pytest.raises(InputError):
        run(tmp_path, scene, gpkg=tmp_path / "o.gpkg", probabilities=tmp_path / "p.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "scene.tif"]


def test_scene_whose_bands_fit_no_model_names_both(tmp_path, toy_models):
    from rasterio.enums import ColorInterp as CI

    scene = tmp_path / "scene.tif"
    write_scene(scene, bands=2, colorinterp=[CI.red, CI.green])
    with pytest.raises(ModelError, match=r"need R,G,B.*this scene has bands G,R"):
        run(tmp_path, scene)


def test_geojson_metadata_names_model_and_scene(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    run(tmp_path, scene, model="toy-rgb")
    meta = json.loads((tmp_path / "out.geojson").read_text())["deadtree"]
    assert meta["model"] == "toy-rgb" and meta["model_version"] == "1.0" and meta["source"] == "scene.tif"


def test_internal_mask_is_nodata(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    discs = [Disc(60, 60, 5), Disc(200, 200, 5)]
    write_scene(scene, discs=discs)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(scene, "r+") as ds:
            mask = np.full((ds.height, ds.width), 255, np.uint8)
            mask[150:, 150:] = 0  # hides the second disc
            ds.write_mask(mask)
    result = run(tmp_path, scene, probabilities=tmp_path / "p.tif")
    assert result.polygons == 1
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert (ds.read(1)[150:, 150:] == 255).all()


def test_device_cpu_is_honoured_and_reported(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    assert run(tmp_path, scene, device="cpu").provider == "CPUExecutionProvider"
    with pytest.raises(ModelError, match="CUDAExecutionProvider"):
        run(tmp_path, scene, device="cuda")


def test_edge_fill_stays_nodata_when_the_scene_is_resampled(tmp_path, toy_models):
    scene = tmp_path / "fine.tif"
    write_scene(scene, height=400, width=400, crs="EPSG:3067", transform=Affine(0.25, 0, 380000, 0, -0.25, 6680000),
                discs=[Disc(200, 200, 14)], border=40, border_value=0)
    run(tmp_path, scene, probabilities=tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as ds:
        codes = ds.read(1)
    assert (codes[:40] == 255).all() and (codes[:, -40:] == 255).all()
    assert (codes[150:250, 150:250] != 255).all()


def test_block_cache_holds_small_scenes_whole_and_two_tiles_of_large_ones(tmp_path):
    from deadtree.raster.read_policy import GDAL_CACHE_BYTES, HOLD_WHOLE_BYTES, MIN_TILE_CACHE_BYTES, tile_cache_bytes
    from deadtree.raster.scene import open_scene

    def caches(width, height):
        path = tmp_path / f"s{width}x{height}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint8",
                           crs="EPSG:32633", transform=Affine(0.6, 0, 0, 0, -0.6, 0), tiled=True,
                           blockxsize=512, blockysize=512, sparse_ok=True):
            pass
        scene = open_scene(path)
        try:
            return {tile: tile_cache_bytes(scene, tile) for tile in (512, 1024, 2048)}
        finally:
            scene.close()

    small = caches(4096, 4096)  # 67 MB of pixels: decoded once, kept
    assert set(small.values()) == {int(4096 * 4096 * 4 * 1.1)} and small[512] <= HOLD_WHOLE_BYTES
    assert caches(1000, 64)[2048] == MIN_TILE_CACHE_BYTES
    wide, wider = caches(10000, 5000), caches(20000, 5000)  # 200 and 400 MB of pixels
    assert wide == wider  # memory does not grow with the scene's width
    assert wide[512] == MIN_TILE_CACHE_BYTES
    # two 2048 px tiles side by side plus a block: (2048 + 512) x (2 * 2048 + 512) x 4 bands, with 10% slack
    assert wide[2048] == int(2560 * 4608 * 4 * 1.1) <= GDAL_CACHE_BYTES


def test_precision_auto_runs_the_int8_variant_on_a_cpu(tmp_path, toy_models):
    from tests.scenes import toy_model
    from deadtree.runtime.metadata import read_model_info, rewrite_model_info

    variant = toy_model(toy_models / "toy-rgbn-int8.onnx", name="toy-rgbn-int8", default=False)
    info = read_model_info(variant)
    info.extra.update(variant_of="toy-rgbn", precision="int8")
    rewrite_model_info(variant, info)

    scene = tmp_path / "scene.tif"
    write_scene(scene)
    assert run(tmp_path, scene).model == "toy-rgbn-int8"
    assert run(tmp_path, scene, precision="fp32").model == "toy-rgbn"
    assert run(tmp_path, scene, precision="int8", model="toy-rgbn").model == "toy-rgbn-int8"
    # a variant asked for by name is run as it is
    assert run(tmp_path, scene, model="toy-rgbn-int8", precision="auto").model == "toy-rgbn-int8"
    with pytest.raises(ModelError, match="no fp16 variant"):
        run(tmp_path, scene, precision="fp16")
    with pytest.raises(ModelError, match="unknown precision"):
        run(tmp_path, scene, precision="int4")
    # the RGB model has no variant: auto quietly keeps fp32
    assert run(tmp_path, scene, model="toy-rgb").model == "toy-rgb"


# Whether malloc serves a large block as a mapping of its own, which the kernel faults in anew at every use
# (page faults are no measure of that: numpy's arrays, and a kernel's huge pages, fault far fewer times).
HEAP_PROBE = """
import ctypes
import sys

from deadtree.cli.heap import bound_this_process_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):  # glibc before 2.33
    print("skip")
    sys.exit()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2

def mapped_fresh(size=8 << 20):
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    during = libc.mallinfo2().hblkhd
    libc.free(block)
    return during - before >= size
"""


def _heap_probe(code: str) -> list[str]:
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    out = subprocess.run([sys.executable, "-c", HEAP_PROBE + code], capture_output=True, text=True,
                         check=True).stdout.split()
    if out == ["skip"]:
        pytest.skip("mallinfo2 needs glibc 2.33 or later")
    return out


def test_the_cli_bounds_its_own_heap():
    """In the `segment` command's process every large array is a mapping of its own, returned to the kernel
    when freed (bounded growth)."""
    assert _heap_probe("print(bound_this_process_heap(), mapped_fresh())") == ["True", "True"]


def test_a_segment_run_leaves_the_callers_heap_alone(tmp_path):
    """What torch eager needs after `segment` in the same process (it ran at half speed when the run's heap
    settings outlived it): the library never sets the allocator (asked of ctypes, which any call into the C
    library's mallopt or malloc_trim goes through)."""
    scene = Path(__file__).resolve().parents[1] / "examples" / "naip_eureka_2020_0.tif"
    code = f"""
asked = []
looked_up = ctypes.CDLL.__getattr__

def spy(self, name):
    asked.append(name)
    return looked_up(self, name)

ctypes.CDLL.__getattr__ = spy
from deadtree.pipeline import SegmentOptions, segment_scene
result = segment_scene({str(scene)!r}, SegmentOptions(output={str(tmp_path / 'o.geojson')!r}, progress=False))
print(result.polygons >= 0, sorted({{n for n in asked if n.startswith(("mallopt", "malloc_trim"))}}))
"""
    assert _heap_probe(code) == ["True", "[]"]


def test_model_metadata_is_parsed_once_per_file_version(tmp_path, monkeypatch):
    import dataclasses

    import onnx

    from deadtree.runtime.metadata import METADATA_KEY, read_model_info
    from tests.scenes import toy_model

    from deadtree.runtime import metadata

    path = toy_model(tmp_path / "m.onnx")
    real_props, parses = metadata.metadata_props, []
    monkeypatch.setattr(metadata, "metadata_props", lambda p: parses.append(p) or real_props(p))
    first = read_model_info(path)
    first.extra["scribbled"] = True  # callers get their own copy
    again = read_model_info(path)
    assert len(parses) == 1 and "scribbled" not in again.extra and again.name == first.name

    model = onnx.load(str(path))
    renamed = dataclasses.replace(again, name="renamed-model")
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = renamed.to_json()
    onnx.save(model, str(path))
    assert read_model_info(path).name == "renamed-model" and len(parses) == 2  # a new version is read again


def plain_run_then_record_model_calls(tmp_path, monkeypatch):
    """A plain run of the test scene, then every batch shape the model is given from now on."""
    from deadtree.runtime.session import OnnxModel

    scene = tmp_path / "scene.tif"
    write_scene(scene)
    plain = run(tmp_path, scene, probabilities=tmp_path / "plain.tif")
    calls = []
    original = OnnxModel.run
    monkeypatch.setattr(OnnxModel, "run", lambda self, batch: calls.append(batch.shape) or original(self, batch))
    return scene, plain, calls


def test_flips_average_three_orientations_and_leave_a_mirror_symmetric_model_unchanged(tmp_path, toy_models,
                                                                                       monkeypatch):
    scene, plain, calls = plain_run_then_record_model_calls(tmp_path, monkeypatch)
    flipped = run(tmp_path, scene, probabilities=tmp_path / "flipped.tif", flips=True)
    assert sum(shape[0] for shape in calls) == 3 * plain.tiles  # each tile and its two mirror images
    # the toy model is a 3x3 mean (mirror-symmetric), so the average of its mirrored runs is the plain run
    with rasterio.open(plain.outputs["probabilities"]) as a, rasterio.open(flipped.outputs["probabilities"]) as b:
        assert np.abs(a.read(1).astype(int) - b.read(1).astype(int)).max() <= 1
    assert flipped.polygons == plain.polygons


def test_scales_run_each_tile_magnified_too_and_map_the_answer_back(tmp_path, toy_models, monkeypatch):
    scene, plain, calls = plain_run_then_record_model_calls(tmp_path, monkeypatch)
    scaled = run(tmp_path, scene, probabilities=tmp_path / "scaled.tif", scales=(1.5,))
    sides = sorted({shape[-1] for shape in calls})
    assert sum(shape[0] for shape in calls) == 2 * plain.tiles and len(sides) >= 2
    assert max(sides) >= 1.5 * min(sides) and all(side % 32 == 0 for side in sides)
    # the toy model is a 3x3 mean: nearly pixelwise, so its magnified answer is nearly its plain one
    with rasterio.open(plain.outputs["probabilities"]) as a, rasterio.open(scaled.outputs["probabilities"]) as b:
        difference = np.abs(a.read(1).astype(int) - b.read(1).astype(int))
    assert np.percentile(difference, 99) <= 26 and difference.max() > 0  # within 0.1 for 99% of pixels
    assert scaled.polygons == plain.polygons


def test_ensemble_averages_the_members_probabilities(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)

    def probabilities(name, **options):
        path = tmp_path / f"{name}.tif"
        result = segment_scene(scene, SegmentOptions(output=tmp_path / f"{name}.geojson", probabilities=path,
                                                     **options))
        with rasterio.open(path) as src:
            return result, src.read(1).astype(int)

    _, rgbn = probabilities("rgbn", model="toy-rgbn")
    _, rgb = probabilities("rgb", model="toy-rgb")
    result, both = probabilities("both", model="toy-rgbn", ensemble=("toy-rgb",))
    assert np.abs(rgbn - rgb).max() > 10  # the members differ, so the test can tell a mean from either
    assert np.abs(both - (rgbn + rgb) / 2).max() <= 1  # each stored code is rounded once
    assert result.ensemble == ["toy-rgb"] and "toy-rgbn 1.0 + toy-rgb" in result.summary()
    written = json.loads((tmp_path / "both.geojson").read_text())["deadtree"]
    assert written["ensemble"] == ["toy-rgb"] and written["threshold"] == 0.5
    assert written["min_peak"] == 0.0  # the toy models' floors are off, and stay off in their mean

    rgb_scene = tmp_path / "rgb.tif"
    write_scene(rgb_scene, bands=3)
    with pytest.raises(ModelError, match="missing NIR"):
        segment_scene(rgb_scene, SegmentOptions(output=tmp_path / "x.geojson", model="toy-rgb",
                                                ensemble=("toy-rgbn",)))
    with pytest.raises(InputError, match="cannot be combined"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "y.geojson", ensemble=("toy-rgb",),
                                            translator="anything"))
    assert not (tmp_path / "x.geojson").exists() and not (tmp_path / "y.geojson").exists()


def test_edge_tiles_are_cut_short_without_changing_the_answer(tmp_path, toy_models, monkeypatch):
    from deadtree.runtime.session import OnnxModel

    scene = tmp_path / "scene.tif"
    write_scene(scene, height=300, width=230)  # grids from -16 in steps of 96: the last tiles need 44 x 70 px
    shapes = []
    real_run = OnnxModel.run

    def recording(self, batch):
        shapes.append(batch.shape)
        return real_run(self, batch)

    monkeypatch.setattr(OnnxModel, "run", recording)
    masks = {}
    for trim in (True, False):
        shapes.clear()
        result = run(tmp_path, scene, probabilities=tmp_path / f"p{trim}.tif", tile_size=128, overlap=32,
                     trim_tiles=trim)
        with rasterio.open(tmp_path / f"p{trim}.tif") as ds:
            masks[trim] = ds.read(1) >= 127
        pixels = sum(s[0] * s[2] * s[3] for s in shapes)
        if trim:
            cut_pixels, cut_polygons = pixels, result.polygons
            # one call takes one shape: the cut tiles at the right and bottom came in calls of their own
            assert {s[2:] for s in shapes} == {(128, 128), (128, 96), (64, 128), (64, 96)}
        else:
            assert {s[2:] for s in shapes} == {(128, 128)}
    assert cut_pixels < 0.85 * pixels
    assert cut_polygons == result.polygons
    assert iou(masks[True], masks[False]) >= 0.99


def test_concurrent_runs_answer_as_sequential_ones(tmp_path, toy_models):
    """The service runs jobs side by side in threads of one process, which then share the finishing threads
    and the remembered model graphs: each job's polygons must be those it gets alone."""
    import threading

    scenes = []
    for seed in range(4):
        scenes.append(tmp_path / f"scene{seed}.tif")
        write_scene(scenes[-1], seed=seed)

    def polygons(scene, name):
        out = tmp_path / name
        segment_scene(scene, SegmentOptions(output=out, progress=False))
        return json.loads(out.read_text())["features"]

    alone = [polygons(scene, f"alone{i}.geojson") for i, scene in enumerate(scenes)]
    together = [None] * len(scenes)

    def job(i):
        together[i] = polygons(scenes[i], f"together{i}.geojson")

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(scenes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone and all(len(features) >= 3 for features in alone)


def test_the_run_says_how_its_time_splits_around_the_model(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    for _ in range(2):  # a second run in the process starts its own clocks
        result = run(tmp_path, scene)
        t = result.timings
        parts = [t["before_model"], t["model"], t["between_model_calls"], t["after_model"]]
        assert all(p >= 0 for p in parts) and t["before_model"] > 0 and t["after_model"] > 0
        assert sum(parts) == pytest.approx(result.seconds)
        assert t["before_model"] + t["after_model"] < result.seconds
