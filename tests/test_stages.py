"""The threaded stages of a streamed run: order kept, errors passed on, everything stopped on the way out."""
import os
import sys
import threading
import time

import pytest

from deadtree.stages import Prefetch, StageChain, StageStopped


def _consume_lazily(consume, stream):
    yield consume(stream)


def test_items_arrive_in_order_through_a_chain():
    with StageChain() as chain:
        first = chain.add(range(100))
        doubled = chain.add(x * 2 for x in first)
        assert list(doubled) == [x * 2 for x in range(100)]


def test_an_error_in_an_early_stage_reaches_the_consumer():
    def broken():
        yield 1
        raise ValueError("disk on fire")

    with StageChain() as chain:
        later = chain.add(x + 1 for x in chain.add(broken()))
        assert next(later) == 2
        with pytest.raises(ValueError, match="disk on fire"):
            next(later)


def test_stages_stop_when_the_consumer_gives_up():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = threading.active_count()
    with pytest.raises(RuntimeError):
        with StageChain() as chain:
            stream = chain.add(x for x in chain.add(endless(), depth=2))
            next(stream)
            raise RuntimeError("consumer failed")
    time.sleep(0.3)
    assert threading.active_count() == before  # no stage thread left running
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count  # and nothing is produced any more


def test_prefetch_runs_ahead_by_at_most_its_depth():
    produced = []

    def source():
        for n in range(50):
            produced.append(n)
            yield n

    stage = Prefetch(source(), depth=3)
    time.sleep(0.3)
    # depth items queued, plus one produced and waiting to be handed over
    assert len(produced) <= 3 + 1
    assert list(stage) == list(range(50))
    stage.join()


def test_stages_leave_every_thread_s_priority_alone():
    """The library changes nothing of its host's: its threads run at the caller's priority."""
    def own_nice():
        yield os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with StageChain() as chain:
        staged = next(chain.add(own_nice()))
        called = chain.call(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert staged == called == mine


def test_a_called_stage_returns_its_result_and_raises_its_error_here():
    with StageChain() as chain:
        numbers = chain.add(range(10))
        assert chain.call(lambda: sum(numbers)) == 45

    def broken():
        raise OSError("disk full")

    with StageChain() as chain, pytest.raises(OSError, match="disk full"):
        chain.call(broken)


def test_called_stages_reuse_their_threads_across_chains():
    """A thread per run would set up PROJ (and the like) again for every scene of a long-lived process."""
    from deadtree.stages import _CALL_THREADS_COUNT

    threads = set()
    for _ in range(3 * _CALL_THREADS_COUNT):
        with StageChain() as chain:
            threads.add(chain.call(lambda: (threading.get_ident(), threading.current_thread().name)))
    assert len(threads) <= _CALL_THREADS_COUNT
    assert all(name.startswith("deadtree-finish") for _, name in threads)
    assert threading.get_ident() not in {ident for ident, _ in threads}


def test_a_stage_stopped_early_is_not_taken_for_the_end_of_its_data():
    """A consumer in another thread must not finish its work as if the data were complete (a half-read scene
    would be vectorised and written as a whole one)."""
    seen = {}
    started = threading.Event()

    def endless():
        n = 0
        while True:
            yield n
            n += 1

    def consume(stream):
        count = 0
        try:
            for _ in stream:
                count += 1
                started.set()
        except StageStopped:
            seen["stopped"] = count
            raise
        seen["ended"] = count

    with pytest.raises(KeyboardInterrupt):
        with StageChain() as chain:
            stream = chain.add(endless())
            worker = chain.add(_consume_lazily(consume, stream))
            started.wait(5)
            raise KeyboardInterrupt
    worker.join(5)
    assert "stopped" in seen and "ended" not in seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_segment_run_s_stages_keep_the_caller_s_priority(tmp_path, toy_models, monkeypatch):
    import deadtree.pipeline as pipeline
    from deadtree.raster.reader import WindowReader
    from tests.scenes import write_scene

    seen = {}

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    real_read, real_vectorise = WindowReader.read, pipeline._vectorise

    def read(self, *args, **kwargs):
        seen.setdefault("read", nice())
        return real_read(self, *args, **kwargs)

    def vectorise(*args, **kwargs):
        seen["finish"] = nice()
        return real_vectorise(*args, **kwargs)

    monkeypatch.setattr(WindowReader, "read", read)
    monkeypatch.setattr(pipeline, "_vectorise", vectorise)
    write_scene(tmp_path / "scene.tif")
    mine = nice()
    pipeline.segment_scene(tmp_path / "scene.tif", pipeline.SegmentOptions(output=tmp_path / "o.geojson", device="cpu"))
    assert seen == {"read": mine, "finish": mine}
    assert nice() == mine
