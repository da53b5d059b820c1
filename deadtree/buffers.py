"""Tile-sized arrays handed back after use and handed out again, instead of fresh memory for every tile.

Large arrays come straight from the kernel (deadtree/heap.py), so each new one is faulted in and zeroed page by
page before numpy writes a byte: for a scaled 1024 px tile (19 MB of float32) that took as long as the
scaling itself. The pipeline keeps a few of them in rotation instead.
"""
from __future__ import annotations

import threading

import numpy as np


class BufferPool:
    """Tile arrays shared between threads, handed out as views of byte blocks and reused by size: a block
    serves any later array of any shape and dtype that fits in it, so the edge tiles of a grid (narrower or
    shorter than the rest) take blocks that full tiles gave back instead of fresh memory. At most `keep` blocks
    wait for reuse."""

    def __init__(self, keep: int = 6):
        self.keep = keep
        self._free: list[np.ndarray] = []  # byte blocks, smallest first
        self._ours: dict[int, np.ndarray] = {}  # id -> block, for every block handed out and not yet dropped
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A C-contiguous array of that shape and dtype with undefined contents."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        with self._lock:
            at = next((i for i, b in enumerate(self._free) if b.size >= size), None)
            block = None if at is None else self._free.pop(at)
        if block is None:
            block = np.empty(max(size, 1), dtype=np.uint8)
            with self._lock:
                self._ours[id(block)] = block
        return block[:size].view(dtype).reshape(shape)

    def give_back(self, array: np.ndarray) -> None:
        """Hand an array from take() back; the caller must hold no view of it any more. Arrays that did not
        come from this pool are left alone."""
        block = array.base
        with self._lock:
            if block is None or self._ours.get(id(block)) is not block or any(b is block for b in self._free):
                return
            self._free.append(block)
            self._free.sort(key=lambda b: b.size)
            if len(self._free) > self.keep:
                dropped = self._free.pop(0)  # the smallest: the large ones serve every shape
                del self._ours[id(dropped)]


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
