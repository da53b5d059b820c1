"""The measurement scripts whose figures the docs quote."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from deadtree.runtime.metadata import read_model_info, rewrite_model_info
from tests.scenes import default_discs, toy_model
from tests.test_training import write_kaggle_layout

ROOT = Path(__file__).resolve().parents[1]


def test_segment_validation_scores_segment_s_polygons_on_the_validation_frames(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003", "wa011"]}))
    out = tmp_path / "scores.json"
    for extra in ([], ["--min-peak", "0.99"], ["--flips"], ["--scales", "1.5"]):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "segment_validation.py"), "--model", str(model),
                               "--data", str(data), "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    default, strict = results[f"{model} auto"], results[f"{model} min-peak 0.99 auto"]
    assert default["frames"] == 2  # the two validation counties' frames only
    assert default["pixel_iou"] > 0.6 and default["object_f1"] > 0.6  # the toy model sees the bright discs
    assert strict["count_predicted"] < default["count_predicted"]  # the toy's peaks (about 0.8) stay below 0.99
    assert results[f"{model} flips auto"]["command"].endswith(f"--flips --precision auto --data {data}")
    assert results[f"{model} scales 1.5 auto"]["command"].endswith(f"--scales 1.5 --precision auto --data {data}")


def test_finer_scene_validation_scores_enlarged_frames_on_their_own_grid(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", counties=("ar001", "ar003", "wa011"), size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003", "wa011"]}))
    out = tmp_path / "finer.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "finer_scene_validation.py"), "--factor", "2",
                           "--model", str(model), "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())["results"][f"{model} x2 bicubic"]
    assert found["frames"] == 2 and found["count_truth"] == 2 * len(default_discs(160, 160))
    # resampled onto the model grid and mapped back, the discs still land on their own pixels
    assert found["pixel_iou"] > 0.6 and found["object_f1"] > 0.6


def test_county_mosaics_place_each_frame_and_score_it_against_its_own_mask(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", counties=("ar001", "ar003", "ar003", "wa011", "wa013"), size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003", "wa011"]}))
    out = tmp_path / "mosaics.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "county_mosaic_validation.py"), "--model",
                           str(model), "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())["results"][f"{model} auto"]
    assert found["mosaics"]["ar003"][0] == 2 and found["mosaics"]["wa011"][0] == 1  # two frames share a scene
    assert found["count_truth"] == 3 * len(default_discs(160, 160))
    # a frame cut from the wrong place of its mosaic would not match its discs
    assert found["pixel_iou"] > 0.6 and found["object_f1"] > 0.6


def test_ensemble_search_scores_every_mean_and_refuses_a_different_split(tmp_path):
    import torch

    from deadtree.nets.segmenter import build_segmenter

    data = write_kaggle_layout(tmp_path / "data", size=96)

    def checkpoint(name, bands, groups, seed):
        torch.manual_seed(seed)
        model = build_segmenter("unet-r18-d4", len(bands))
        path = tmp_path / f"{name}.pt"
        torch.save({"model": model.state_dict(), "config": {"arch": "unet-r18-d4", "bands": list(bands)},
                    "split": {"validation_groups": groups}}, path)
        return f"{name}={path}"

    groups = ["ar003", "wa011"]
    models = [checkpoint("a", ("R", "G", "B", "NIR"), groups, 0), checkpoint("b", ("R", "G", "B"), groups, 1)]
    out = tmp_path / "ensembles.json"
    script = [sys.executable, str(ROOT / "scripts" / "ensemble_search.py")]
    proc = subprocess.run([*script, *models, "--data", str(data), "--largest", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"a", "b", "a + b"}
    assert all(0 <= r["pixel_iou"] <= 1 and len(r["object_f1_by_floor"]) > 1 for r in results.values())

    other = checkpoint("c", ("R", "G", "B", "NIR"), ["wa011"], 2)
    proc = subprocess.run([*script, models[0], other, "--data", str(data), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and "share one split" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_tuning_predicts_validation_frames_with_segment_s_flips_and_scales(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from tune_peak_filter import validation_probabilities

    data = write_kaggle_layout(tmp_path / "data", size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003", "wa011"]}))
    frames, plain = validation_probabilities(model, str(data))
    _, flipped = validation_probabilities(model, str(data), flips=True)
    _, scaled = validation_probabilities(model, str(data), scales=(1.5,))
    assert len(frames) == 2 and all(p.shape == f.mask.shape for p, f in zip(plain, frames))
    for a, b, c in zip(plain, flipped, scaled):
        assert np.abs(a - b).max() < 1e-5  # the toy (a 3x3 mean) is mirror-symmetric
        assert b.shape == c.shape and 0 < np.abs(a - c).max() and np.percentile(np.abs(a - c), 99) < 0.1


def test_error_breakdown_splits_each_part_s_union(tmp_path):
    import torch

    from deadtree.nets.segmenter import build_segmenter

    data = write_kaggle_layout(tmp_path / "data", size=96)
    torch.manual_seed(0)
    model = build_segmenter("unet-r18-d4", 4)
    checkpoint = tmp_path / "a.pt"
    torch.save({"model": model.state_dict(), "config": {"arch": "unet-r18-d4", "bands": ["R", "G", "B", "NIR"]},
                "split": {"validation_groups": ["ar003", "wa011"]}, "state": {"best": {"threshold": 0.5}}},
               checkpoint)
    out = tmp_path / "breakdown.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "error_breakdown.py"), str(checkpoint),
                           "--data", str(data), "--train-every", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    assert results["validation"]["frames"] == 2 and results["training"]["frames"] == 4
    for part in results.values():
        assert abs(sum(part["pooled"].values()) - 1) < 1e-9
        assert set(part["by_state"]) == {"ar", "wa"}


def test_input_preparation_scores_both_preparations_alike_on_frames_without_fill(tmp_path):
    import torch

    from deadtree.nets.segmenter import build_segmenter

    data = write_kaggle_layout(tmp_path / "data", size=96)  # no black rims: the two preparations are one
    torch.manual_seed(0)
    checkpoint = tmp_path / "a.pt"
    torch.save({"model": build_segmenter("unet-r18-d4", 4).state_dict(),
                "config": {"arch": "unet-r18-d4", "bands": ["R", "G", "B", "NIR"]},
                "split": {"validation_groups": ["ar003", "wa011"]}}, checkpoint)
    out = tmp_path / "preparation.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "input_preparation.py"), str(checkpoint),
                           "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())["results"]["a.pt"]
    assert found["frames"] == 2
    old, scene = found["fill in the stretch"], found["as segment reads a scene"]
    assert old == scene and 0 <= old["pixel_iou"] <= 1 and old["threshold"] > 0


def test_county_bootstrap_pools_whole_counties_and_stays_within_states_when_asked():
    import importlib.util

    spec = importlib.util.spec_from_file_location("county_bootstrap", ROOT / "scripts" / "county_bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # two states; within each state the counties score alike, between states they differ
    counts = {"ar001": [50, 100], "ar003": [50, 100], "wa001": [10, 100], "wa003": [10, 100]}
    within = module.bootstrap(counts, 500, by_state=True)
    assert np.allclose(within, 0.3)  # one county per state's pair, always: the same pooled IoU
    across = module.bootstrap(counts, 500, by_state=False)
    assert across.min() == 0.1 and across.max() == 0.5  # all-Washington and all-Arkansas draws happen
    assert abs(np.median(across) - 0.3) < 1e-9
    assert module.summary(across)["share_at_or_above_0.48"] > 0


def test_the_gpu_session_script_without_a_verb_only_prints_its_usage(tmp_path):
    """The script's header is comments from end to end: a quoted newline in it once left lines that bash ran
    as commands (and a stray backquote that swallowed what followed)."""
    script = ROOT / "scripts" / "device" / "gpu_session.sh"
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 2 and proc.stderr == ""
    assert proc.stdout.startswith("# Training and GPU checks on a lent GPU machine")
