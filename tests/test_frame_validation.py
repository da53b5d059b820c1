"""`deadtree validate`: segment on annotated frames, scored apart by the county's side of the model's split."""
import dataclasses
import json

from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.evaluation.frame_validation import county_role
from deadtree.runtime.metadata import read_model_info, rewrite_model_info
from tests.scenes import default_discs, toy_model
from tests.test_training import write_kaggle_layout


def test_county_roles():
    validation, training = {"mo025"}, {"ar037"}
    assert county_role("mo025", validation, training) == "validation"
    assert county_role("ar037", validation, training) == "training"
    assert county_role("tx999", validation, training) == "unseen"
    assert county_role("tx999", validation, set()) == "not recorded"  # a model that keeps no training list


def test_validate_scores_each_side_of_the_split_apart(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", counties=("ar003", "wa011", "wa011", "tx001"), size=160)
    model = toy_model(tmp_path / "toy-rgbn.onnx")
    info = read_model_info(model)
    extra = {**info.extra, "validation_groups": ["ar003"], "training_groups": ["wa011"]}
    rewrite_model_info(model, dataclasses.replace(info, extra=extra))
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["validate", str(data), "--model", str(model), "--json", str(out),
                                      "--by-county"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "validation counties" in result.output and "new counties" in result.output
    report = json.loads(out.read_text())
    roles = report["by_role"]
    assert {role: roles[role]["frames"] for role in roles} == {"validation": 1, "training": 2, "unseen": 1}
    discs = len(default_discs(160, 160))
    assert roles["training"]["count_truth"] == 2 * discs and roles["unseen"]["count_truth"] == discs
    assert roles["validation"]["object_f1"] > 0.6  # the toy model sees the bright discs through segment
    assert report["by_county"]["wa011"]["frames"] == 2


def test_validate_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "Kaggle-layout" in result.output and "Traceback" not in result.output
