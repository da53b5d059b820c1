import logging
import os

import pytest

from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.runtime.model_sessions import ModelSessions
from deadtree.runtime.session import ENV_GRAPH_OPTIMIZATION, OnnxModel
from tests.scenes import toy_model, write_scene


def test_a_session_handed_back_is_taken_once_and_by_its_own_key_only():
    idle = ModelSessions(limit=2)
    assert idle.take(("a",)) is None
    first = object()
    idle.give_back(("a",), first)
    assert idle.take(("b",)) is None
    assert idle.take(("a",)) is first
    assert idle.take(("a",)) is None  # taken: the next run of that model opens its own


def test_one_session_waits_per_key_and_the_least_recently_returned_goes_first():
    idle = ModelSessions(limit=2)
    a1, a2, b, c = object(), object(), object(), object()
    idle.give_back(("a",), a1)
    idle.give_back(("a",), a2)  # one of that key waits already: dropped
    idle.give_back(("b",), b)
    idle.give_back(("c",), c)  # over the limit: ("a",) goes
    assert len(idle) == 2
    assert idle.take(("a",)) is None and idle.take(("b",)) is b and idle.take(("c",)) is c


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "toy.onnx"
    toy_model(path)
    return path


def test_a_released_model_s_session_serves_the_next_run_with_the_same_settings(model_file):
    sessions = ModelSessions()
    first = OnnxModel(model_file, "cpu", threads=1, sessions=sessions)
    session = first.session
    first.release()
    first.release()  # twice is once
    with pytest.raises(RuntimeError, match="after release"):
        first.run(None)
    second = OnnxModel(model_file, "cpu", threads=1, sessions=sessions)
    assert second.session is session
    assert second.seconds == 0.0 and second.first_call is None  # the counters are the run's own
    beside = OnnxModel(model_file, "cpu", threads=1, sessions=sessions)  # while `second` holds it: its own
    assert beside.session is not session
    second.release()
    assert OnnxModel(model_file, "cpu", threads=2, sessions=sessions).session is not session
    # without a handle nothing is kept: the next model opens a session of its own
    alone = OnnxModel(model_file, "cpu", threads=1)
    alone.release()
    assert OnnxModel(model_file, "cpu", threads=1).session is not alone.session


def test_a_rewritten_model_file_or_other_graph_settings_get_a_new_session(model_file, monkeypatch):
    sessions = ModelSessions()
    model = OnnxModel(model_file, "cpu", threads=1, sessions=sessions)
    session = model.session
    model.release()
    monkeypatch.setenv(ENV_GRAPH_OPTIMIZATION, "extended")
    other = OnnxModel(model_file, "cpu", threads=1, sessions=sessions)
    assert other.session is not session
    monkeypatch.delenv(ENV_GRAPH_OPTIMIZATION)
    toy_model(model_file)  # the same path, written again
    stat = model_file.stat()
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert OnnxModel(model_file, "cpu", threads=1, sessions=sessions).session is not session


def test_segment_runs_given_one_handle_share_a_session_and_give_the_same_answers(tmp_path, toy_models, caplog):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    results = []
    sessions = ModelSessions()
    for name in ("one", "two"):
        with caplog.at_level(logging.INFO, logger="deadtree"):
            results.append(segment_scene(scene, SegmentOptions(output=tmp_path / f"{name}.geojson", device="cpu"),
                                         sessions=sessions))
        assert len(sessions) == 1
    reused = ["session of an earlier run" in r.getMessage() for r in caplog.records if " runs on " in r.getMessage()]
    assert reused == [False, True]
    assert (tmp_path / "one.geojson").read_text() == (tmp_path / "two.geojson").read_text()
    assert results[0].polygons == results[1].polygons > 0
