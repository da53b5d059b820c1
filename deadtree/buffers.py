"""Tile-sized arrays handed back after use and handed out again, instead of fresh memory for every tile.

Large arrays come straight from the kernel (deadtree/heap.py), so each new one is faulted in and zeroed page by
page before numpy writes a byte: for a scaled 1024 px tile (19 MB of float32) that took as long as the
scaling itself. The pipeline keeps a few of them in rotation instead.
"""
from __future__ import annotations

import threading

import numpy as np


class BufferPool:
    """Arrays by shape and dtype, shared between threads. At most `keep` of each kind wait for reuse."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An array of that shape and dtype with undefined contents."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        return np.empty(shape, dtype)

    def give_back(self, array: np.ndarray) -> None:
        """Hand an array from take() back; the caller must hold no view of it any more."""
        key = (array.shape, array.dtype.str)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.keep and not any(a is array for a in free):
                free.append(array)


class Scratch:
    """Arrays of varying shape rewritten again and again by one thread (a strip's values, codes and mask), each
    a view of a buffer kept per name that only grows: fresh memory for every strip was over a third of the
    page faults of a `segment` run, and the kernel zeroes each faulted page (benchmarks/overhead.py)."""

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An array of that shape and dtype with undefined contents, valid until the next get() of `name`."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, dtype=np.uint8)
        return buffer[:size].view(dtype).reshape(shape)
