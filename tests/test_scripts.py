"""The measurement scripts whose figures the docs quote."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from deadtree.runtime.metadata import read_model_info, rewrite_model_info
from tests.scenes import toy_model
from tests.test_training import write_kaggle_layout

ROOT = Path(__file__).resolve().parents[1]


def test_segment_validation_scores_segment_s_polygons_on_the_validation_frames(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003", "wa011"]}))
    out = tmp_path / "scores.json"
    for extra in ([], ["--min-peak", "0.99"]):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "segment_validation.py"), "--model", str(model),
                               "--data", str(data), "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    default, strict = results[f"{model} auto"], results[f"{model} min-peak 0.99 auto"]
    assert default["frames"] == 2  # the two validation counties' frames only
    assert default["pixel_iou"] > 0.6 and default["object_f1"] > 0.6  # the toy model sees the bright discs
    assert strict["count_predicted"] < default["count_predicted"]  # the toy's peaks (about 0.8) stay below 0.99
