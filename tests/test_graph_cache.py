"""Tidied int8 graphs kept on disk: a later process opens the checked outcome instead of working it out again."""
import numpy as np
import pytest

from deadtree.runtime.vnni_int8 import channels_last
from deadtree.runtime.vnni_int8 import graph_cache as tidied_cache
from deadtree.runtime.registry import resolve_model
from deadtree.runtime.session import OnnxModel
from tests.rewrites import answer_changing


@pytest.fixture
def int8(monkeypatch):
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "tidied")
    return resolve_model("deadtree-rgbn-int8", "segmenter")


def new_process(monkeypatch):
    """What a new process has: nothing in memory, and no way to tidy (it must not need to)."""
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})

    def no_tidying(model):
        raise AssertionError("tidied again although the outcome was on disk")

    monkeypatch.setattr(channels_last, "tidy", no_tidying)


def test_a_later_process_opens_the_saved_tidied_graph(int8, monkeypatch):
    tile = np.random.default_rng(3).random((1, 4, 256, 192), dtype=np.float32)
    first = OnnxModel(int8, "cpu")
    assert channels_last.runs_tidied(first.session)
    assert len(list(tidied_cache.cache_folder().glob("*.onnx"))) == 1
    new_process(monkeypatch)
    later = OnnxModel(int8, "cpu")
    assert channels_last.runs_tidied(later.session)
    assert np.array_equal(later.run(tile), first.run(tile))


def test_a_refusal_is_kept_too(int8, monkeypatch):
    monkeypatch.setattr(channels_last, "tidy", answer_changing(channels_last.tidy))  # the check refuses it
    assert not channels_last.runs_tidied(OnnxModel(int8, "cpu").session)
    assert len(list(tidied_cache.cache_folder().glob("*.refused"))) == 1
    new_process(monkeypatch)
    assert not channels_last.runs_tidied(OnnxModel(int8, "cpu").session)


def test_no_cache_folder_or_one_that_cannot_be_written_is_no_error(int8, monkeypatch, tmp_path):
    monkeypatch.setenv(tidied_cache.ENV_CACHE_DIR, "")
    assert tidied_cache.cache_folder() is None
    assert channels_last.runs_tidied(OnnxModel(int8, "cpu").session)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(tidied_cache.ENV_CACHE_DIR, str(blocked))
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})
    assert channels_last.runs_tidied(OnnxModel(int8, "cpu").session)


def test_the_name_changes_with_the_cpu_and_the_rewriting_code(monkeypatch):
    # both CPUs are stubbed: the host's own answer may be either of them
    key = ("model.onnx", 1, 2, "1.32.0", ())
    monkeypatch.setattr("deadtree.machine.vector_extensions", lambda: "AVX-512 VNNI, AVX-512, AVX2")
    base = tidied_cache._name(key)
    monkeypatch.setattr("deadtree.machine.vector_extensions", lambda: "AVX2")
    other_cpu = tidied_cache._name(key)
    monkeypatch.setattr(tidied_cache, "_rewriting_code", lambda: "edited")
    assert len({base, other_cpu, tidied_cache._name(key)}) == 3


def test_the_folder_is_trimmed_to_its_limit_least_recently_used_first(int8, monkeypatch):
    import os

    def key(model):
        return (model, 1, 2, "1.32.0", ())

    folder = tidied_cache.cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for age, name in enumerate(("newer", "older")):
        stale = folder / f"{name}.onnx"
        stale.write_bytes(b"x" * 1000)
        os.utime(stale, (1_000_000 - age, 1_000_000 - age))
    writing = folder / ".partial-another-process"  # an outcome another process is writing: never trimmed
    writing.write_bytes(b"p" * 5000)
    os.utime(writing, (1, 1))
    monkeypatch.setattr(tidied_cache, "CACHE_LIMIT_BYTES", 1500)
    tidied_cache.save_outcome(key("a.onnx"), None)  # a refusal: an empty file
    refusal = f"{tidied_cache._name(key('a.onnx'))}.refused"
    assert sorted(p.name for p in folder.glob("*")) == sorted([writing.name, "newer.onnx", refusal])
    # an outcome that is read counts as used: it outlives an older one that was not
    tidied_cache.save_outcome(key("b.onnx"), b"g" * 400)
    os.utime(folder / "newer.onnx", (1, 1))
    assert tidied_cache.saved_outcome(key("b.onnx")) == b"g" * 400
    monkeypatch.setattr(tidied_cache, "CACHE_LIMIT_BYTES", 500)
    tidied_cache.save_outcome(key("c.onnx"), None)
    assert not (folder / "newer.onnx").exists()
    assert tidied_cache.saved_outcome(key("b.onnx")) == b"g" * 400
