"""ONNX Runtime sessions kept between runs in one process.

`validate` runs `segment` on 80 frames, the service and `segment-many` on scene after scene, each with the
same model. Opening a session (0.045 s for a tidied int8 graph from the disk cache, much longer on a GPU) and
growing ONNX Runtime's memory arena on its first calls (some 70,000 page faults for a 1024 px tile) were paid
again for every one: the 80 validation frames took 10.6-11.0 s through `segment` instead of 8.6-8.9 on the
VNNI host. A finished run hands its session back here, and the next run with the same model and settings
takes it. Each session serves one run at a time, so concurrent jobs still get sessions of their own.

An idle session keeps its arena: about 275 MB after a 1024 px tile run of `deadtree-rgbn-int8`. At most
IDLE_LIMIT wait, the least recently used going first; a `segment` command exits after its one run anyway.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

IDLE_LIMIT = 2


@dataclass
class OpenedSession:
    """A built session and what opening it settled."""

    session: object
    provider: str
    graph_optimization: object
    input_name: str
    output_name: str


class IdleSessions:
    def __init__(self, limit: int = IDLE_LIMIT):
        self.limit = limit
        self._idle: OrderedDict[tuple, OpenedSession] = OrderedDict()
        self._lock = threading.Lock()
        self._orphans: list[OrderedDict] = []

    def forget_after_fork(self) -> None:
        """In a forked child: the sessions it inherited lack the ONNX Runtime threads they were built with, so
        they are neither handed out nor destroyed (a destructor would wait for those threads), only left behind."""
        self._orphans.append(self._idle)
        self._idle = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple) -> OpenedSession | None:
        """The idle session for `key`, now the caller's alone, or None."""
        with self._lock:
            return self._idle.pop(key, None)

    def give_back(self, key: tuple, opened: OpenedSession) -> None:
        """Keep `opened` for the next take(key); where one already waits for that key, this one is dropped."""
        with self._lock:
            if key in self._idle:
                return
            self._idle[key] = opened
            while len(self._idle) > self.limit:
                self._idle.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)


IDLE_SESSIONS = IdleSessions()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=IDLE_SESSIONS.forget_after_fork)
