import json

import numpy as np
import rasterio
from affine import Affine
from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.machine import vector_extensions
from tests.scenes import toy_model, write_scene

runner = CliRunner()


def segment(*args):
    return runner.invoke(app, ["segment", *map(str, args), "--quiet"])


def assert_clean_failure(result, folder, expect: str):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]
    assert "Traceback" not in result.output
    leftovers = [p.name for p in folder.iterdir() if p.suffix in (".geojson", ".gpkg") or p.name.startswith(".deadtree")]
    assert leftovers == []


def test_segment_writes_outputs_and_one_line_summary(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    result = segment(scene, "-o", tmp_path / "o.geojson", "--gpkg", tmp_path / "o.gpkg")
    assert result.exit_code == 0, result.output
    assert "dead-tree polygons" in result.output and "ha in total" in result.output
    assert (tmp_path / "o.geojson").exists() and (tmp_path / "o.gpkg").exists()


def test_the_model_line_names_provider_threads_and_vector_extensions(toy_models, caplog):
    import logging

    from deadtree.runtime.session import OnnxModel

    with caplog.at_level(logging.INFO, logger="deadtree"):
        OnnxModel(toy_models / "toy-rgbn.onnx", "cpu", threads=1)
    assert f"toy-rgbn 1.0 runs on CPUExecutionProvider (1 thread; {vector_extensions()})" in caplog.text


def test_help_speaks_to_foresters():
    result = runner.invoke(app, ["segment", "--help"])
    assert result.exit_code == 0
    for words in ("--min-area", "--threshold", "--bands", "GeoPackage", "QGIS"):
        assert words in result.output


def test_version_names_the_package_and_its_runtime():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"deadtree {version('deadtree')} (onnxruntime ")
    assert "CPUExecutionProvider" in result.output and "GDAL " in result.output


def test_help_paragraphs_flow_to_the_terminal_width():
    # the docstring breaks this sentence after "a pixel counts"; a wide terminal must show it on one line
    result = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "a pixel counts when its centre is inside" in result.output


def test_untagged_five_band_scene_asks_for_bands_and_runs_with_them(tmp_path, toy_models):
    from rasterio.enums import ColorInterp

    scene = tmp_path / "five.tif"
    write_scene(scene, bands=5, colorinterp=[ColorInterp.undefined] * 5)
    result = segment(scene, "-o", tmp_path / "o.geojson")
    assert_clean_failure(result, tmp_path, "--bands")
    assert "R,G,B,NIR" in result.output
    result = segment(scene, "-o", tmp_path / "o.geojson", "--bands", "R,G,B,NIR,-")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o.geojson").read_text())["features"]


def bad_inputs(tmp_path):
    """(name, scene path, extra args, expected words in the error)"""
    cases = []
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster")
    cases.append(("not a raster", text, [], "not a raster"))

    good = tmp_path / "good.tif"
    write_scene(good, height=400, width=400)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    cases.append(("truncated", truncated, [], "truncated or damaged"))

    no_crs = tmp_path / "nocrs.tif"
    write_scene(no_crs, crs=None)
    cases.append(("no CRS", no_crs, [], "no coordinate reference system"))

    no_georef = tmp_path / "nogeoref.tif"
    with rasterio.open(no_georef, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(np.full((3, 64, 64), 100, np.uint8))
    cases.append(("no georeferencing", no_georef, [], "no georeferencing"))

    rotated = tmp_path / "rotated.tif"
    write_scene(rotated, transform=Affine(0.6, 0, 500000, 0, -0.6, 6700000) * Affine.rotation(10))
    cases.append(("rotated", rotated, [], "rio warp rotated.tif"))

    empty = tmp_path / "empty.tif"
    write_scene(empty, nodata=0, border=150, border_value=0)
    cases.append(("all nodata", empty, [], "no valid pixels"))

    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=1_500_000, height=1_500_000, count=4, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(0.6, 0, 500000, 0, -0.6, 6700000), tiled=True,
                       compress="deflate", BIGTIFF="YES", SPARSE_OK="TRUE"):
        pass
    cases.append(("absurd header", huge, [], "beyond the limit"))

    cases.append(("unwritable output", good, ["-o", "/proc/deadtree/out.geojson"], "cannot write"))
    cases.append(("GeoJSON named for a GeoPackage", good, ["-o", "trees.gpkg"], "for a GeoPackage use --gpkg"))
    cases.append(("probabilities over the scene", good, ["--probabilities", str(good)], "is the input scene itself"))
    cases.append(("unknown model", good, ["--model", "no-such-model"], "unknown segmenter 'no-such-model'"))
    cases.append(("missing file", tmp_path / "missing.tif", [], "no such file"))
    folder = tmp_path / "tiles"
    folder.mkdir()
    cases.append(("a folder", folder, [], "segment-many"))
    cases.append(("bad threshold", good, ["--threshold", "1.5"], "--threshold"))
    cases.append(("cuda without GPU", good, ["--device", "cuda"], "CUDAExecutionProvider"))
    cases.append(("unknown precision", good, ["--precision", "int4"], "unknown precision 'int4'"))
    cases.append(("missing variant", good, ["--precision", "fp16"], "no fp16 variant"))
    cases.append(("tile size off the network's stride", good, ["--tile-size", "100"], "multiple of 32"))
    cases.append(("tile size beyond memory", good, ["--tile-size", "100000"], "multiple of 32 from 64 to 2048"))
    cases.append(("no tiles a batch", good, ["--batch-size", "0"], "--batch-size must be at least 1"))
    cases.append(("shrinking scale", good, ["--scales", "0.5"], "magnifications above 1"))
    cases.append(("scale not a number", good, ["--scales", "1.5,big"], "give magnifications as numbers"))
    return cases


def test_every_bad_input_gets_one_clear_line_and_no_output(tmp_path, toy_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, scene, extra, expect in bad_inputs(tmp_path):
        result = segment(scene, *extra)
        assert_clean_failure(result, tmp_path, expect)
    with rasterio.open(tmp_path / "good.tif") as ds:  # no case wrote over its input
        assert ds.count == 4


def test_models_lists_names_and_scores_whole_in_an_80_column_terminal(toy_models, monkeypatch):
    import dataclasses

    from deadtree.runtime.metadata import read_model_info, rewrite_model_info

    path = toy_models / "toy-rgbn.onnx"
    info = read_model_info(path)
    validation = {"pixel_iou": 0.4123, "object_f1": 0.558, "peak_object_f1": 0.6134}
    rewrite_model_info(path, dataclasses.replace(info, extra={**info.extra, "validation": validation}))
    # as long a name as the longest shipped one (deadtree-rgbn-effb0-fp16), in a translator's wider role
    toy_model(toy_models / "toy-rgbn-efficientnet-b0.onnx", name="toy-rgbn-efficientnet-b0", default=False)
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("toy-rgbn "))
    assert "R,G,B,NIR" in row and "0.412" in row and "0.613" in row and "default" in row  # F1 as segment delivers
    assert "…" not in result.output


def test_ensemble_members_can_be_comma_separated_or_repeated(tmp_path, toy_models):
    toy_model(toy_models / "toy-twin.onnx", name="toy-twin", default=False)
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    written = []
    for name, members in (("comma", ["--ensemble", "toy-rgb,toy-twin"]),
                          ("repeated", ["--ensemble", "toy-rgb", "--ensemble", " toy-twin "])):
        out = tmp_path / f"{name}.geojson"
        result = runner.invoke(app, ["segment", str(scene), "-o", str(out), "--model", "toy-rgbn", "--quiet",
                                     *members])
        assert result.exit_code == 0, result.output
        written.append(json.loads(out.read_text())["deadtree"]["ensemble"])
    assert written == [["toy-rgb", "toy-twin"]] * 2


def test_export_refuses_tiles_the_pipeline_could_not_run(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read: the options fail first")
    for options, words in ((["--name", "t", "--tile", "100"], "--tile must be a multiple of 32"),
                           (["--name", "t", "--tile", "256", "--overlap", "256"], "must be smaller than the tile"),
                           (["--name", "a/b"], "no folders")):
        result = runner.invoke(app, ["export", str(checkpoint), "--out-dir", str(tmp_path / "out"), *options])
        assert result.exit_code == 2 and words in result.output, result.output
        assert not (tmp_path / "out").exists()


def test_sigterm_unwinds_like_ctrl_c_and_leaves_nothing_behind(tmp_path, toy_models):
    import signal
    import subprocess
    import sys
    import time

    small, scene = tmp_path / "small.tif", tmp_path / "scene.tif"
    write_scene(small, height=300, width=300)
    with rasterio.open(small) as ds:
        pixels, profile = ds.read(), ds.profile
    # ten by ten copies: a few seconds of work for the toy model (write_scene itself is slow at this size)
    with rasterio.open(scene, "w", **{**profile, "width": 3000, "height": 3000, "tiled": True,
                                     "blockxsize": 256, "blockysize": 256}) as ds:
        ds.write(np.tile(pixels, (1, 10, 10)))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "deadtree.cli", "segment", str(scene), "-o", str(out / "o.geojson"),
                             "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out.glob(".deadtree-*")):  # the work folder exists from the first pixel to the rename
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # as `kill`, `docker stop` or a batch scheduler would
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "interrupted: no output written" in err, err
    assert list(out.iterdir()) == []


def test_an_interrupt_that_a_library_turns_into_its_own_error_still_reads_as_an_interrupt(tmp_path, toy_models,
                                                                                       monkeypatch):
    """Ctrl-C or SIGTERM during the first `import onnxruntime` reaches deadtree as ONNX Runtime's
    ImportError("initialization failed"), raised while handling the KeyboardInterrupt: a traceback and exit
    code 1 before (found by test_sigterm_unwinds_like_ctrl_c_and_leaves_nothing_behind, one run in five)."""
    import deadtree.batch
    import deadtree.pipeline

    def import_interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")

    def broken(*args, **kwargs):
        raise ImportError("no module named onnxruntime")

    scene = tmp_path / "scene.tif"
    write_scene(scene)
    monkeypatch.setattr(deadtree.pipeline, "segment_scene", import_interrupted)
    result = segment(scene, "-o", tmp_path / "o.geojson")
    assert result.exit_code == 2 and "interrupted: no output written" in result.output
    monkeypatch.setattr(deadtree.batch, "run_batch", import_interrupted)
    result = runner.invoke(app, ["segment-many", str(scene), "--out-dir", str(tmp_path / "many"), "--quiet"])
    assert result.exit_code == 2 and "interrupted: scenes finished so far are kept" in result.output
    # an error that no interrupt caused is not dressed up as one
    monkeypatch.setattr(deadtree.pipeline, "segment_scene", broken)
    result = segment(scene, "-o", tmp_path / "o.geojson")
    assert result.exit_code == 1 and isinstance(result.exception, ImportError)


def test_interrupted_training_and_evaluation_say_so_in_one_line(tmp_path, monkeypatch):
    import deadtree.evaluation.evaluate
    import deadtree.training.segmenter_trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deadtree.training.segmenter_trainer, "train_segmenter", interrupted)
    result = runner.invoke(app, ["train", "segmenter", str(tmp_path), "--out-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--resume" in result.output and "Traceback" not in result.output
    monkeypatch.setattr(deadtree.evaluation.evaluate, "evaluate", interrupted)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p.geojson"), str(tmp_path / "t.tif")])
    assert result.exit_code == 2 and "error: interrupted" in result.output
