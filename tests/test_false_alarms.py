"""The false-alarm figure: polygons per km² and their area share, pooled over scenes, through `segment`."""
import numpy as np
import pytest

from deadtree.evaluation.false_alarms import FalseAlarms, false_alarms, scene_area_m2
from tests.scenes import Disc, write_scene


def test_pooled_figures_are_sums_over_sums():
    pooled = FalseAlarms()
    pooled.add(1e6, 3, 100.0)
    pooled.add(3e6, 1, 300.0)
    assert pooled.per_km2 == pytest.approx(1.0) and pooled.area_share == pytest.approx(1e-4)
    assert pooled.summary()["scenes"] == 2 and FalseAlarms().per_km2 == 0.0


def test_known_discs_on_toy_scenes_are_counted(tmp_path, toy_models):
    # 200 x 200 px at 0.6 m = 0.0144 km² each; three bright discs on the first scene, none on the second
    discs = [Disc(40, 40, 5), Disc(100, 150, 6), Disc(160, 60, 4.5)]
    write_scene(tmp_path / "a.tif", height=200, width=200, discs=discs)
    write_scene(tmp_path / "b.tif", height=200, width=200, discs=[], seed=1)
    assert scene_area_m2(tmp_path / "a.tif") == pytest.approx(200 * 200 * 0.36)
    seen = []
    pooled = false_alarms([tmp_path / "a.tif", tmp_path / "b.tif"], on_scene=seen.append, model="toy-rgbn")
    assert pooled.scenes == 2 and len(seen) == 2 and pooled.polygons == 3
    assert pooled.per_km2 == pytest.approx(3 / (2 * 0.0144))
    disc_area = sum(np.pi * d.radius ** 2 for d in discs) * 0.36
    assert pooled.area_share == pytest.approx(disc_area / (2 * 200 * 200 * 0.36), rel=0.35)


def test_the_figure_is_kept_with_the_model_and_listed(tmp_path, toy_models):
    from typer.testing import CliRunner

    from deadtree.cli import app
    from deadtree.evaluation.false_alarms import record_false_alarms
    from deadtree.runtime.metadata import read_model_info

    card = toy_models / "toy-rgbn.md"
    card.write_text("# toy-rgbn\n\n## Validation\n\nscores\n")
    pooled = FalseAlarms()
    pooled.add(2.5e6, 5, 250.0)
    for _ in range(2):  # recorded again: replaced, not repeated
        record_false_alarms(toy_models / "toy-rgbn.onnx", pooled, "Palm Springs", "auto", "python x.py")
    assert read_model_info(toy_models / "toy-rgbn.onnx").extra["false_alarms"]["polygons_per_km2"] == 2.0
    text = card.read_text()
    assert text.count("## False alarms outside forest") == 1 and "**2.0 dead-tree polygons per km²**" in text
    assert "## Validation" in text
    listed = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"}).output
    assert " FA " in listed and " 2.0 " in listed
