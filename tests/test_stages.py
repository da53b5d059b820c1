"""The threaded stages of a streamed run: order kept, errors passed on, everything stopped on the way out."""
import threading
import time

import pytest

from deadtree.stages import Prefetch, StageChain


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
