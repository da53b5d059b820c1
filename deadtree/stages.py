"""Run the stages of a streamed job side by side: each stage pulls from the one before it in its own thread.

Reading and decoding tiles, running the model, and blending, writing and vectorising finished rows then
overlap, so the model is not left waiting on the disk and post-processing hides behind model compute. Queues
are short (a couple of batches), so memory stays bounded; an exception in any stage reaches the consumer.
(The side stages once ran at a lowered thread priority: 6-7% on the Intel VNNI host of 2026-11, 1% on the AMD
EPYC VNNI host of 2026-12-08, within its noise; removed, docs/performance.md.)
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1
# Threads for StageChain.call, kept for the life of the process: a fresh thread per run cost the service and
# `validate` 20 ms or more per scene in PROJ's per-thread set-up alone. Several threads, so that concurrent jobs
# do not queue behind one another.
_CALL_THREADS: list[ThreadPoolExecutor] = []
_CALL_THREADS_LOCK = threading.Lock()
_CALL_THREADS_COUNT = 8
if hasattr(os, "register_at_fork"):  # a forked child has none of these threads, only their bookkeeping
    os.register_at_fork(after_in_child=_CALL_THREADS.clear)


class StageStopped(Exception):
    """Raised to a stage's consumer when the chain was stopped before the stage reached its end."""


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


class Prefetch(Iterator[T]):
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer."""

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "deadtree-stage"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._fill, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _fill(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_End(exc))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        while not self._finished:
            if self._stop.is_set():
                # not StopIteration: a consumer in another stage would take the stop for the end of the data
                raise StageStopped
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                self._finished = True
                if item.error is not None:
                    raise item.error
                break
            return item
        raise StopIteration

    def stop(self) -> None:
        """Ask the thread to stop; it does so at its next hand-over."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class StageChain:
    """Stages started together and stopped together, whatever happens downstream."""

    def __init__(self):
        self.stages: list[Prefetch] = []
        self.calls: list[Future] = []

    def add(self, source: Iterable[T], depth: int = 2, name: str = "deadtree-stage") -> Prefetch[T]:
        stage = Prefetch(source, depth, name)
        self.stages.append(stage)
        return stage

    def call(self, work: Callable[[], T]) -> T:
        """`work()` as the chain's last stage, in a thread of its own (threads kept for the process, see
        _CALL_THREADS), waited for here, so that an interrupt reaches this thread; its exception is raised
        here. If this wait ends early (Ctrl-C), the chain's exit stops the stages `work` reads from and waits
        for it to end."""
        future = _call_threads().submit(work)
        self.calls.append(future)
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except FutureTimeout:
                continue

    def __enter__(self) -> "StageChain":
        return self

    def __exit__(self, *exc) -> None:
        # Stop every stage before waiting for any: a stage blocked handing to a stopped neighbour then exits.
        for stage in self.stages:
            stage.stop()
        for call in self.calls:
            try:
                call.result()  # it ends once the stages it reads from have stopped
            except Exception:  # the caller is already leaving with its own exception
                pass
        for stage in self.stages:
            stage.join()


def _call_threads() -> ThreadPoolExecutor:
    with _CALL_THREADS_LOCK:
        if not _CALL_THREADS:
            _CALL_THREADS.append(ThreadPoolExecutor(_CALL_THREADS_COUNT, thread_name_prefix="deadtree-finish"))
        return _CALL_THREADS[0]
