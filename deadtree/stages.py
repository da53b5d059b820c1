"""Run the stages of a streamed job side by side: each stage pulls from the one before it in its own thread.

Reading and decoding tiles, running the model, and blending, writing and vectorising finished rows then
overlap, so the model is not left waiting on the disk and post-processing hides behind model compute. Queues
are short (a couple of batches), so memory stays bounded; an exception in any stage reaches the consumer.

On a CPU the model's ONNX Runtime threads keep every core busy, and each of its operators waits for the
slowest of them: a stage that takes a core for a moment stalls the whole operator, so the model lost about
twice the CPU time the stages used. Stages can therefore run at a lowered priority (a higher nice value),
taking the cores when the model's threads wait; then the model's time inside `segment` fell to within a few
percent of its time alone (docs/history/performance-log-2026-11.md).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1
# Threads for StageChain.call, kept for the life of the process, one pool per priority (a thread's nice value
# only goes up): a fresh thread per run cost the service and `validate` 20 ms or more per scene in PROJ's
# per-thread set-up alone. Several threads, so that concurrent jobs do not queue behind one another.
_CALL_THREADS: dict[int, ThreadPoolExecutor] = {}
_CALL_THREADS_LOCK = threading.Lock()
_CALL_THREADS_PER_PRIORITY = 8
if hasattr(os, "register_at_fork"):  # a forked child has none of these threads, only their bookkeeping
    os.register_at_fork(after_in_child=_CALL_THREADS.clear)


class StageStopped(Exception):
    """Raised to a stage's consumer when the chain was stopped before the stage reached its end."""


def lower_this_thread(step: int) -> None:
    """Raise the calling thread's nice value by `step` (Linux, where each thread has its own; elsewhere the
    call would change the whole process, so nothing is done). Never fails: the priority is only a hint."""
    if step <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + step))
    except OSError:
        pass


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


class Prefetch(Iterator[T]):
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer; `lower` raises
    that thread's nice value (see lower_this_thread)."""

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "deadtree-stage", lower: int = 0):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._fill, args=(source, lower), name=name, daemon=True)
        self._thread.start()

    def _fill(self, source: Iterable[T], lower: int) -> None:
        lower_this_thread(lower)
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

    def add(self, source: Iterable[T], depth: int = 2, name: str = "deadtree-stage", lower: int = 0) -> Prefetch[T]:
        stage = Prefetch(source, depth, name, lower)
        self.stages.append(stage)
        return stage

    def call(self, work: Callable[[], T], lower: int = 0) -> T:
        """`work()` as the chain's last stage, in a thread of its own (so that it too can run at a lowered
        priority; threads kept for the process, see _CALL_THREADS), waited for here; its exception is raised
        here. If this wait ends early (Ctrl-C), the chain's exit stops the stages `work` reads from and waits
        for it to end."""
        future = _call_threads(lower).submit(work)
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


def _call_threads(lower: int) -> ThreadPoolExecutor:
    with _CALL_THREADS_LOCK:
        pool = _CALL_THREADS.get(lower)
        if pool is None:
            pool = _CALL_THREADS[lower] = ThreadPoolExecutor(
                _CALL_THREADS_PER_PRIORITY, thread_name_prefix="deadtree-finish", initializer=lower_this_thread,
                initargs=(lower,))
        return pool
