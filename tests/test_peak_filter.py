import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.metrics import Scores
from deadtree.peak_filter import peak_filtered, peak_record, pooled, tune_peak
from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.runtime.metadata import read_model_info
from deadtree.training.model_card import add_peak_to_card
from tests.scenes import default_discs, dim_disc, toy_model, write_scene


def square(probs, row, col, size, peak, body=0.6):
    probs[row:row + size, col:col + size] = body
    probs[row + size // 2, col + size // 2] = peak


def frame(crown_peak, blob_peak=None):
    """A 40 x 40 frame with one true crown (a 5 x 5 square) and optionally a false blob elsewhere."""
    probs = np.zeros((40, 40), dtype=np.float32)
    truth = np.zeros((40, 40), dtype=bool)
    square(probs, 5, 5, 5, crown_peak)
    truth[5:10, 5:10] = True
    if blob_peak is not None:
        square(probs, 25, 25, 5, blob_peak)
    return probs, truth


def test_faint_and_small_patches_are_removed():
    probs = np.zeros((30, 30), dtype=np.float32)
    square(probs, 2, 2, 5, 0.95)
    square(probs, 15, 15, 5, 0.7)
    probs[27, 27] = 0.99  # one confident pixel: below the minimum area
    kept = peak_filtered(probs, threshold=0.5, min_peak=0.8, min_area_px=3)
    assert kept[2:7, 2:7].all()
    assert not kept[15:20, 15:20].any() and not kept[27, 27]
    assert peak_filtered(probs, threshold=0.5, min_peak=0.0, min_area_px=0).sum() == 51


def test_patches_are_four_connected_as_the_polygons():
    probs = np.zeros((10, 10), dtype=np.float32)
    probs[2, 2] = 0.95
    probs[3, 3] = 0.6  # touches the confident pixel at a corner only: a patch of its own
    kept = peak_filtered(probs, threshold=0.5, min_peak=0.9)
    assert kept[2, 2] and not kept[3, 3]


def test_tuned_floor_removes_false_blobs_and_lifts_object_f1():
    frames = [frame(0.95, blob_peak=0.72) for _ in range(3)]
    tuned = tune_peak([p for p, _ in frames], [t for _, t in frames], threshold=0.5, min_area_px=0)
    assert tuned["min_peak"] > 0.72
    assert tuned["without"]["object_precision"] == pytest.approx(0.5)
    assert tuned["with"]["object_f1"] == pytest.approx(1.0)
    record = peak_record(tuned)
    assert record["min_peak"] == tuned["min_peak"] and record["peak_object_f1"] == pytest.approx(1.0)
    assert record["min_area_object_f1"] == pytest.approx(2 / 3)


def test_held_out_estimate_chooses_each_group_s_floor_on_the_other_groups():
    # County a: confident crowns beside faint false blobs. County b: faint true crowns only. A floor tuned on a
    # removes b's crowns; one tuned on b keeps a's blobs: the held-out estimate pays for both.
    a = [frame(0.95, blob_peak=0.72) for _ in range(2)]
    b = [frame(0.72) for _ in range(2)]
    frames = a + b
    tuned = tune_peak([p for p, _ in frames], [t for _, t in frames], threshold=0.5,
                      groups=["a", "a", "b", "b"], min_area_px=0)
    chosen = tuned["held_out"]["floors_chosen"]
    assert chosen["a"] == 0.0 and chosen["b"] > 0.72
    assert tuned["held_out"]["object_f1"] < tuned["with"]["object_f1"]
    assert tuned["held_out"]["count_matched"] == 2  # a's crowns found, b's dropped


def test_pooled_scores_equal_scores_of_all_frames_together():
    frames = [frame(0.95, blob_peak=0.72), frame(0.72)]
    separate = []
    together = Scores()
    for probs, truth in frames:
        one = Scores()
        one.add(probs >= 0.5, truth)
        separate.append(one)
        together.add(probs >= 0.5, truth)
    assert pooled(separate) == together.summary()


@pytest.fixture
def faint_scene(tmp_path, monkeypatch):
    """The toy model (floor 0.8) and a scene with one disc it sees faintly (peak about 0.65)."""
    folder = tmp_path / "models"
    folder.mkdir()
    toy_model(folder / "toy-rgbn.onnx", min_peak=0.8)
    monkeypatch.setenv("DEADTREE_MODELS", str(folder))
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    dim_disc(scene, default_discs(300, 260)[0], 108)
    return scene


def features(path):
    return json.loads(path.read_text())["features"]


def test_segment_applies_the_model_floor_unless_told_otherwise(tmp_path, faint_scene):
    everything = segment_scene(faint_scene, SegmentOptions(output=tmp_path / "all.geojson", min_peak=0.0))
    peaks = sorted(f["properties"]["score_max"] for f in features(tmp_path / "all.geojson"))
    assert everything.polygons == 8 and 0.5 < peaks[0] < 0.8 <= peaks[1]

    default = segment_scene(faint_scene, SegmentOptions(output=tmp_path / "default.geojson"))
    kept = features(tmp_path / "default.geojson")
    assert default.polygons == len(kept) == 7
    assert default.faint_dropped == 1 and everything.faint_dropped == 0
    assert "7 dead-tree polygons (1 faint patch under --min-peak 0.8 left out)" in default.summary()
    assert all(f["properties"]["score_max"] >= 0.8 for f in kept)
    assert json.loads((tmp_path / "default.geojson").read_text())["deadtree"]["min_peak"] == 0.8

    segment_scene(faint_scene, SegmentOptions(output=tmp_path / "low.geojson", min_peak=peaks[0] - 0.01))
    assert len(features(tmp_path / "low.geojson")) == 8


def test_an_ensemble_lowers_its_lowest_member_floor_per_extra_member():
    from deadtree.peak_filter import ensemble_floor

    assert ensemble_floor([0.85]) == 0.85
    assert ensemble_floor([0.85, 0.9]) == 0.8  # the tuned floor of the 0.2.0 RGB+NIR and RGB pair
    assert ensemble_floor([0.85, 0.9, 0.9]) == 0.75  # ... and of those two with the EfficientNet-B0
    assert ensemble_floor([0.9, 0.9, 0.9]) == 0.8  # the three shipped segmenters since RGB+NIR 0.5.0
    assert ensemble_floor([0.0, 0.9]) == 0.0  # a member with the filter off keeps it off


def test_segment_ensemble_uses_the_lowered_floor(tmp_path, faint_scene):
    toy_model(faint_scene.parent / "models" / "toy-twin.onnx", name="toy-twin", default=False, min_peak=0.9)
    result = segment_scene(faint_scene, SegmentOptions(output=tmp_path / "pair.geojson", ensemble=("toy-twin",)))
    assert result.min_peak == 0.75
    assert json.loads((tmp_path / "pair.geojson").read_text())["deadtree"]["min_peak"] == 0.75


def test_segment_cli_rejects_a_floor_outside_0_1(tmp_path, faint_scene):
    result = CliRunner().invoke(app, ["segment", str(faint_scene), "-o", str(tmp_path / "o.geojson"),
                                      "--min-peak", "1.5", "--quiet"])
    assert result.exit_code != 0
    assert "--min-peak must be between 0 and 1" in result.output
    assert not (tmp_path / "o.geojson").exists()


def test_card_gains_the_floor_and_its_scores_once(tmp_path, faint_scene):
    info = read_model_info(faint_scene.parent / "models" / "toy-rgbn.onnx")
    card = tmp_path / "card.md"
    card.write_text("# toy\n\n| | |\n|---|---|\n| threshold | 0.50 (tuned) |\n| architecture | toy |\n\n"
                    "## Validation scores\n\nscaled by its own percentile stretch, predicted whole.\n\n## Notes\n")
    best = {"pixel_iou": 0.4, "object_f1": 0.55, "min_peak": 0.8, "peak_object_f1": 0.61,
            "peak_held_out_object_f1": 0.6, "min_area_object_f1": 0.57}
    add_peak_to_card(card, info, best)
    once = card.read_text()
    add_peak_to_card(card, info, best)
    assert card.read_text() == once
    assert once.count("| min peak | 0.80") == 1
    assert "| object F1 | 0.550 | 0.570 | 0.610 | 0.600 |" in once
    assert once.index("With the peak filter") < once.index("## Notes")


def test_tuning_script_writes_the_floor_into_a_model_its_variants_and_cards(tmp_path):
    import dataclasses
    import sys
    from pathlib import Path

    from deadtree.runtime.metadata import rewrite_model_info

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from tune_peak_filter import write_floor

    parent = toy_model(tmp_path / "toy-rgbn.onnx")
    variant = toy_model(tmp_path / "toy-rgbn-int8.onnx", name="toy-rgbn-int8")
    info = read_model_info(variant)
    rewrite_model_info(variant, dataclasses.replace(info, extra={"variant_of": "toy-rgbn", "precision": "int8",
                                                                 "checks": {"mask_iou_vs_fp32": 0.99}}))
    (tmp_path / "toy-rgbn.md").write_text("# toy-rgbn\n\n| | |\n|---|---|\n| threshold | 0.50 |\n\n"
                                          "scaled by its own percentile stretch, predicted whole.\n\n## Notes\n")
    frames = [frame(0.95, blob_peak=0.72) for _ in range(2)]
    tuned = tune_peak([p for p, _ in frames], [t for _, t in frames], 0.5, groups=["a", "b"], min_area_px=0)

    written = write_floor(parent, tuned)
    assert written == [parent, variant]
    for path in written:
        assert read_model_info(path).min_peak == tuned["min_peak"] > 0.72
        assert read_model_info(path).extra["validation"]["peak_object_f1"] == pytest.approx(1.0)
    assert f"| min peak | {tuned['min_peak']:.2f}" in (tmp_path / "toy-rgbn.md").read_text()
    assert f"min peak\n({tuned['min_peak']:.2f})" in (tmp_path / "toy-rgbn-int8.md").read_text()
