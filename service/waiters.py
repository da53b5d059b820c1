"""Lets a request handler await a job that a worker thread finishes (POST /v1/segment waits on its job)."""
from __future__ import annotations

import asyncio
import threading


class JobWaiters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}

    def register(self, job_id: str) -> asyncio.Future:
        """Call on the event loop, before the job can finish, so the notice cannot be missed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._waiting[job_id] = (loop, future)
        return future

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._waiting.pop(job_id, None)

    def notify(self, job_id: str) -> None:
        """Called from a worker thread when a job has finished, failed or been dropped."""
        with self._lock:
            entry = self._waiting.pop(job_id, None)
        if entry is None:
            return
        loop, future = entry
        try:
            loop.call_soon_threadsafe(_settle, future)
        except RuntimeError:  # the loop is closed: the server is going down and nobody waits any more
            pass


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
