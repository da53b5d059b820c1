"""Run the stages of a streamed job side by side: each stage pulls from the one before it in its own thread.

Reading and decoding tiles, running the model, and blending, writing and vectorising finished rows then
overlap, so the model is not left waiting on the disk and post-processing hides behind model compute. Queues
are short (a couple of batches), so memory stays bounded; an exception in any stage reaches the consumer.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1


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
                raise StopIteration
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

    def add(self, source: Iterable[T], depth: int = 2, name: str = "deadtree-stage") -> Prefetch[T]:
        stage = Prefetch(source, depth, name)
        self.stages.append(stage)
        return stage

    def __enter__(self) -> "StageChain":
        return self

    def __exit__(self, *exc) -> None:
        # Stop every stage before waiting for any: a stage blocked handing to a stopped neighbour then exits.
        for stage in self.stages:
            stage.stop()
        for stage in self.stages:
            stage.join()
