"""`deadtree evaluate`: hand-made truth and predictions with known scores, and a segment -> evaluate round trip."""
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from shapely.geometry import box
from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.errors import InputError
from deadtree.evaluation.evaluate import evaluate
from deadtree.pipeline import SegmentOptions, segment_scene
from tests.scenes import write_scene

CRS = "EPSG:32633"
TRANSFORM = Affine(1.0, 0, 500000, 0, -1.0, 6700000)  # 1 m pixels: pixel (row, col) spans x+col..x+col+1
TRUTH_A = (2, 2, 6, 6)  # row0, col0, row1, col1: 16 px
TRUTH_B = (10, 10, 14, 14)  # 16 px


def write_raster(path, array, nodata=None, transform=TRANSFORM, crs=CRS):
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[0], width=array.shape[1], count=1,
                       dtype=array.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(array, 1)
    return path


def truth_raster(path, nodata_block=None):
    mask = np.zeros((20, 20), np.uint8)
    for r0, c0, r1, c1 in (TRUTH_A, TRUTH_B):
        mask[r0:r1, c0:c1] = 1
    if nodata_block:
        r0, c0, r1, c1 = nodata_block
        mask[r0:r1, c0:c1] = 255
    return write_raster(path, mask, nodata=255 if nodata_block else None)


def pixel_box(r0, c0, r1, c1, inset=0.25):
    """The polygon of a block of pixels, shrunk a little so only the block's pixel centres fall inside."""
    x0, y0 = TRANSFORM @ (c0, r1)
    x1, y1 = TRANSFORM @ (c1, r0)
    return box(x0 + inset, y0 + inset, x1 - inset, y1 - inset)


# all of A, the left half of B (8 px, IoU 0.5) and a 2 x 2 false alarm
PREDICTED = [pixel_box(*TRUTH_A), pixel_box(10, 10, 14, 12), pixel_box(16, 2, 18, 4)]
EXPECTED = dict(pixel_tp=24, pixel_fp=4, pixel_fn=8, pixel_iou=24 / 36, pixel_precision=24 / 28,
                pixel_recall=24 / 32, count_matched=2, count_predicted=3, count_truth=2,
                object_precision=2 / 3, object_recall=1.0, object_f1=0.8)


def assert_scores(report, expected):
    for key, value in expected.items():
        assert report[key] == pytest.approx(value), key


@pytest.mark.parametrize("kind", ["geojson", "gpkg"])
def test_polygons_against_a_truth_mask(tmp_path, kind):
    frame = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=PREDICTED, crs=CRS)
    pred = tmp_path / f"pred.{kind}"
    if kind == "geojson":
        frame.to_crs("EPSG:4326").to_file(pred)  # lon/lat: evaluate must reproject onto the UTM grid
    else:
        frame.to_file(pred, layer="dead_trees")
    report = evaluate(pred, truth_raster(tmp_path / "truth.tif"))
    assert_scores(report, EXPECTED)
    assert report["images"] == 1 and "IoU >= 0.25" in report["matching"]


def test_probability_raster_threshold_and_truth_nodata(tmp_path):
    probs = np.zeros((20, 20), np.float32)
    probs[2:6, 2:6] = 0.9  # A, sure
    probs[10:14, 10:14] = 0.4  # B, unsure
    probs[16:18, 2:4] = 0.8  # false alarm, but where the truth has nodata
    pred = write_raster(tmp_path / "prob.tif", probs)
    truth = truth_raster(tmp_path / "truth.tif", nodata_block=(15, 0, 20, 6))
    assert_scores(evaluate(pred, truth), dict(pixel_tp=16, pixel_fp=0, pixel_fn=16, count_matched=1,
                                              count_predicted=1, count_truth=2, object_precision=1.0))
    assert_scores(evaluate(pred, truth, threshold=0.3), dict(pixel_iou=1.0, object_f1=1.0))


def test_two_polygon_files_need_a_grid(tmp_path):
    pred, truth = tmp_path / "pred.gpkg", tmp_path / "truth.geojson"
    gpd.GeoDataFrame(geometry=PREDICTED, crs=CRS).to_file(pred)
    gpd.GeoDataFrame(geometry=[pixel_box(*TRUTH_A), pixel_box(*TRUTH_B)], crs=CRS).to_crs(4326).to_file(truth)
    with pytest.raises(InputError, match="--grid"):
        evaluate(pred, truth)
    grid = truth_raster(tmp_path / "scene.tif")
    assert_scores(evaluate(pred, truth, grid=grid), EXPECTED)


def test_kaggle_folders_are_pooled_image_by_image(tmp_path):
    truth, pred = tmp_path / "kaggle" / "masks", tmp_path / "pred"
    truth.mkdir(parents=True)
    pred.mkdir()
    t1 = np.zeros((8, 8), np.uint8)
    t1[0:4, 0:4] = 255  # Kaggle truth masks are 0/255
    p1 = np.zeros((8, 8), np.uint8)
    p1[0:4, 0:2] = 1  # predictions may be 0/1
    t2 = np.zeros((8, 8), np.uint8)
    t2[6:8, 6:8] = 255
    p2 = np.zeros((8, 8), np.uint8)
    p2[0:2, 0:2] = 255  # a false alarm, and the tree missed
    for name, t, p in (("mask_a.png", t1, p1), ("mask_b.png", t2, p2)):
        Image.fromarray(t).save(truth / name)
        Image.fromarray(p).save(pred / name)
    report = evaluate(pred, tmp_path / "kaggle")
    assert_scores(report, dict(images=2, pixel_tp=8, pixel_fp=4, pixel_fn=12, count_matched=1,
                               count_predicted=2, count_truth=2, object_f1=0.5))
    (pred / "mask_b.png").unlink()
    with pytest.raises(InputError, match="mask_b.png"):
        evaluate(pred, tmp_path / "kaggle")


def test_segment_then_evaluate_against_the_true_discs(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    discs = write_scene(scene)
    with rasterio.open(scene) as ds:
        truth = write_raster(tmp_path / "truth.tif", discs.astype(np.uint8), transform=ds.transform, crs=ds.crs)
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", probabilities=tmp_path / "p.tif"))
    out = CliRunner().invoke(app, ["evaluate", str(tmp_path / "o.geojson"), str(truth),
                                   "--json", str(tmp_path / "scores.json")])
    assert out.exit_code == 0, out.output
    assert "pixels" in out.output and "objects" in out.output
    report = json.loads((tmp_path / "scores.json").read_text())
    assert report["count_truth"] == report["count_predicted"] == report["count_matched"] == result.polygons
    # 0.82 here: the toy model's 3x3 smoothing makes outlines ~1 px wider than the discs; a misplaced
    # outline (one pixel off, or a wrong reprojection) would fall well below
    assert report["pixel_iou"] > 0.75 and report["object_f1"] == 1.0
    # the probability raster at the model's threshold scores like the polygons made from it
    from_raster = evaluate(tmp_path / "p.tif", truth, threshold=0.5)
    assert from_raster["object_f1"] == 1.0 and from_raster["pixel_iou"] == pytest.approx(report["pixel_iou"], abs=0.05)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    out = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing.geojson"), str(tmp_path / "t.tif")])
    assert out.exit_code == 2 and out.output.startswith("error: ") and "no such file" in out.output


def test_a_scene_given_as_truth_is_refused_but_serves_as_grid(tmp_path):
    pred, truth = tmp_path / "pred.gpkg", tmp_path / "truth.geojson"
    gpd.GeoDataFrame(geometry=PREDICTED, crs=CRS).to_file(pred)
    gpd.GeoDataFrame(geometry=[pixel_box(*TRUTH_A), pixel_box(*TRUTH_B)], crs=CRS).to_file(truth)
    grid = truth_raster(tmp_path / "mask.tif")
    with rasterio.open(grid) as ds:
        profile = {**ds.profile, "count": 4}
    scene = tmp_path / "scene.tif"  # four bands on the mask's grid, as an orthophoto would be
    with rasterio.open(scene, "w", **profile) as ds:
        ds.write(np.full((4, profile["height"], profile["width"]), 90, np.uint8))
    with pytest.raises(InputError, match="scene.tif has 4 bands"):
        evaluate(pred, scene)  # every pixel nonzero: it would have scored as one huge dead tree
    assert_scores(evaluate(pred, truth, grid=scene), EXPECTED)
