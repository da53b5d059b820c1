"""`deadtree segment-many`: parallel scenes on Dask, per-scene failures, resuming, and the merged layer."""
import importlib.util
import json
import os
import shutil

import pyogrio
import pytest
from typer.testing import CliRunner

from deadtree.batch import find_scenes, is_done, scene_outputs, segment_one
from deadtree.cli import app
from deadtree.errors import InputError
from deadtree.vector.merge import merge_scene_layers
from deadtree.vector.writers import GPKG_LAYER
from tests.scenes import write_scene

pytest.importorskip("distributed")
runner = CliRunner()
SETTINGS = {"model": None, "threshold": None, "min_area": 1.0, "bands": None, "precision": "auto", "flips": False,
            "scales": [], "ensemble": []}


def segment_many(*args):
    return runner.invoke(app, ["segment-many", *map(str, args), "--quiet"])


def feature_count(path):
    return pyogrio.read_info(path, layer=GPKG_LAYER)["features"]


def test_broken_scene_is_reported_the_rest_merged_and_a_rerun_skips_what_is_done(tmp_path, geotiff_dir,
                                                                                   toy_models):
    # toy_models sets DEADTREE_MODELS before the local cluster starts, so its worker processes inherit it.
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for name in ("bishop_2020_0.tif", "bishop_2020_1.tif"):
        shutil.copy(geotiff_dir / "naip" / name, tiles / name)
    write_scene(tiles / "synthetic.tif")  # EPSG:32633, unlike the NAIP tiles' EPSG:26911
    (tiles / "broken.tif").write_text("not a raster\n")
    out = tmp_path / "out"

    first = segment_many(tiles / "*.tif", "--out-dir", out, "--workers", "2", "--merged", tmp_path / "all.gpkg")
    assert first.exit_code == 1, first.output
    failures = [line for line in first.output.splitlines() if line.startswith("failed: ")]
    assert failures == [f"failed: broken.tif: broken.tif is not a raster GDAL can read "
                        f"('{tiles / 'broken.tif'}' not recognized as being in a supported file format.)"]
    assert "4 scenes: 3 segmented, 0 already done, 1 failed (broken.tif)" in first.output
    assert "Traceback" not in first.output
    good = ("bishop_2020_0", "bishop_2020_1", "synthetic")
    assert all((out / f"{stem}.geojson").is_file() and (out / f"{stem}.gpkg").is_file() for stem in good)
    assert not (out / "broken.geojson").exists() and not (out / "broken.gpkg").exists()
    assert not is_done(tiles / "broken.tif", out, SETTINGS)  # so the next run tries it again
    assert not [p for p in out.iterdir() if p.name.startswith(".deadtree")]  # no temporary leftovers

    counts = {f"{stem}.tif": feature_count(out / f"{stem}.gpkg") for stem in good}
    assert all(counts.values()), counts  # the toy model finds something in each scene
    merged = pyogrio.read_dataframe(tmp_path / "all.gpkg")
    assert len(merged) == sum(counts.values())
    assert merged["scene"].value_counts().to_dict() == counts
    assert merged.crs.to_epsg() == 4326  # two CRSs among the scenes
    assert "(EPSG:4326, lon/lat, because the scenes use 2 different CRSs)" in first.output

    # The user removes the broken file and runs again: nothing is redone, so no cluster is even started.
    (tiles / "broken.tif").unlink()
    markers = {p.name: p.stat().st_mtime_ns for p in (out / ".done").iterdir()}
    outputs = {p.name: p.stat().st_mtime_ns for p in out.glob("*.g*")}
    second = segment_many(tiles / "*.tif", "--out-dir", out, "--merged", tmp_path / "all.parquet")
    assert second.exit_code == 0, second.output
    assert "3 of 3 scenes already done" in second.output
    assert "3 scenes: 0 segmented, 3 already done, 0 failed" in second.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / ".done").iterdir()} == markers
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.g*")} == outputs
    if importlib.util.find_spec("pyarrow"):
        import geopandas as gpd

        assert gpd.read_parquet(tmp_path / "all.parquet")["scene"].value_counts().to_dict() == counts


def test_scene_counts_as_done_only_with_its_marker_inputs_and_options(tmp_path, toy_models):
    scene = tmp_path / "a.tif"
    write_scene(scene)
    out = tmp_path / "out"
    out.mkdir()
    outcome = segment_one(str(scene), str(out), SETTINGS)  # in this process: no cluster needed
    assert outcome.ok and outcome.polygons > 0
    assert is_done(scene, out, SETTINGS)
    assert json.loads(scene_outputs(out, scene)["marker"].read_text())["polygons"] == outcome.polygons
    assert not is_done(scene, out, {**SETTINGS, "threshold": 0.3})  # other options: redo
    assert not is_done(scene, out, {**SETTINGS, "flips": True})
    assert not is_done(scene, out, {**SETTINGS, "scales": [1.5]})
    assert not is_done(scene, out, {**SETTINGS, "ensemble": ["toy-rgb"]})
    with_rgb = segment_one(str(scene), str(out), {**SETTINGS, "ensemble": ["toy-rgb"]})
    assert with_rgb.ok and is_done(scene, out, {**SETTINGS, "ensemble": ["toy-rgb"]})
    segment_one(str(scene), str(out), SETTINGS)

    scene_outputs(out, scene)["marker"].unlink()  # as if killed between the outputs and the marker
    assert not is_done(scene, out, SETTINGS)
    segment_one(str(scene), str(out), SETTINGS)
    os.utime(scene, ns=(0, 0))  # the scene was replaced since
    assert not is_done(scene, out, SETTINGS)


def test_failure_comes_back_as_one_line_and_leaves_no_marker(tmp_path, toy_models):
    scene = tmp_path / "cut.tif"
    write_scene(tmp_path / "whole.tif")
    data = (tmp_path / "whole.tif").read_bytes()
    scene.write_bytes(data[: len(data) // 3])
    outcome = segment_one(str(scene), str(tmp_path), SETTINGS)
    assert not outcome.ok and "\n" not in outcome.error and "truncated" in outcome.error
    assert not scene_outputs(tmp_path, scene)["marker"].exists()


def test_merge_keeps_a_shared_crs(tmp_path, toy_models):
    out = tmp_path / "out"
    out.mkdir()
    layers = {}
    for name, seed in (("a.tif", 0), ("b.tif", 1)):
        write_scene(tmp_path / name, seed=seed)
        assert segment_one(str(tmp_path / name), str(out), SETTINGS).ok
        layers[name] = scene_outputs(out, tmp_path / name)["gpkg"]
    summary = merge_scene_layers(layers, tmp_path / "m.gpkg")
    assert (summary.crs, summary.scenes) == ("EPSG:32633", 2)
    assert summary.polygons == sum(feature_count(p) for p in layers.values())


def test_bad_arguments_fail_before_any_cluster_starts(tmp_path):
    write_scene(tmp_path / "a.tif")
    (tmp_path / "sub").mkdir()
    write_scene(tmp_path / "sub" / "a.tif")
    with pytest.raises(InputError, match="would both write a.geojson"):
        find_scenes([str(tmp_path / "a.tif"), str(tmp_path / "sub" / "a.tif")])
    for args, expect in (
        ([tmp_path / "none-*.tif"], "matches no files"),
        ([tmp_path / "a.tif", "--merged", tmp_path / "all.shp"], "use a .gpkg"),
        ([tmp_path / "a.tif", "--merged", tmp_path / "out" / "a.gpkg"], "is also a scene's own output"),
        ([tmp_path / "a.tif", "--threshold", "2"], "--threshold must be between 0 and 1"),
        ([tmp_path / "a.tif", "--precision", "int4"], "unknown precision"),
    ):
        result = segment_many(*args, "--out-dir", tmp_path / "out")
        assert result.exit_code == 2 and expect in result.output, result.output
    result = segment_many(tmp_path / "a.tif", "--out-dir", "/proc/deadtree/out")
    assert result.exit_code == 2 and "cannot create --out-dir" in result.output and "Traceback" not in result.output


def test_only_this_run_s_work_folders_are_discarded(tmp_path):
    import time

    from deadtree.outputs import discard_workspaces, workspace

    old = workspace(tmp_path / "a.geojson")
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # another run's, an hour ago
    started = time.time() - 1
    new = workspace(tmp_path / "b.geojson")
    (new / "half.gpkg").write_bytes(b"half-written")
    assert discard_workspaces(tmp_path, started) == 1
    assert old.is_dir() and not new.exists()


def test_a_folder_argument_says_what_its_subfolders_hold(tmp_path, caplog):
    """A folder takes its own GeoTIFFs only; scenes one level down are named, with the pattern that takes them,
    rather than silently left out."""
    import logging

    (tmp_path / "only-nested" / "2020").mkdir(parents=True)
    write_scene(tmp_path / "only-nested" / "2020" / "a.tif")
    with pytest.raises(InputError, match=r"holds no \.tif files; its subfolders hold 1: .*\*\*.*\*\.tif"):
        find_scenes([str(tmp_path / "only-nested")])
    write_scene(tmp_path / "only-nested" / "b.tif")
    with caplog.at_level(logging.WARNING, logger="deadtree"):
        scenes = find_scenes([str(tmp_path / "only-nested")])
    assert [p.name for p in scenes] == ["b.tif"]
    assert "1 GeoTIFF in its subfolders left out" in caplog.text


def test_failures_that_are_not_deadtree_s_own_read_as_one_plain_line():
    from rasterio.errors import RasterioIOError

    from deadtree.batch import one_line
    from deadtree.errors import InputError

    assert one_line(InputError("scene.tif has no CRS\nmore")) == "scene.tif has no CRS"
    assert one_line(RasterioIOError("Read failed.\ndetails")).startswith("the scene cannot be read: ")
    assert one_line(MemoryError()) == "the scene needs more memory than this worker has: split it into parts"
    assert one_line(TypeError("bad operand")) == "unexpected error, please report it (TypeError: bad operand)"
