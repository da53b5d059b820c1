"""ModelSessions: a handle on ONNX Runtime sessions that one owner keeps between its runs.

`validate` runs `segment` on 80 frames, the service and `segment-many` on scene after scene, each with the
same model. Opening a session (0.13 s for a tidied int8 graph on the VNNI host, much longer on a GPU) and
growing ONNX Runtime's memory arena on its first calls (some 70,000 page faults for a 1024 px tile) were paid
again for every one: the 80 validation frames took 10.6-11.0 s through `segment` instead of 8.6-8.9 on the
VNNI host. So such an owner makes a ModelSessions and passes it to each run (segment_scene's `sessions`); a
finished run hands its sessions back to it, and the next run with the same model and settings takes them.
Each session serves one run at a time, so concurrent jobs still get sessions of their own. A run given no
handle opens its own sessions and drops them at its end: the library keeps nothing behind the caller's back.

An idle session keeps its arena: about 275 MB after a 1024 px tile run of `deadtree-rgbn-int8`. At most
`limit` wait, the least recently used going first.
"""
from __future__ import annotations

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


class ModelSessions:
    def __init__(self, limit: int = IDLE_LIMIT):
        self.limit = limit
        self._idle: OrderedDict[tuple, OpenedSession] = OrderedDict()
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

