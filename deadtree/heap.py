"""Keep the C heap from growing with the scene on glibc (Linux), for the length of a run only.

A streamed run allocates and frees many arrays of a few MB from several threads. glibc then raises its mmap
threshold after each large free (up to 32 MB) and serves later arrays from per-thread heaps, which keep freed
memory and fragment: on a 400-megapixel scene the peak grew 38% over a 25-megapixel one, with nothing in the
pipeline itself growing. A fixed 128 KB threshold (large arrays always come from, and go back to, the
kernel) and two heaps held it to 19% (benchmarks/memory.py).

The settings are the process's, and outside a run they cost others: under a 128 KB threshold torch eager maps
every activation fresh from the kernel and runs twice as slowly (a notebook that segments a scene and then
trains, or benchmarks/engines.py's naive loop). glibc cannot hand the threshold back to its own adjustment
once it is set, so when the last run in the process ends it is set where that adjustment ends up after large
frees: 32 MB, with freed memory up to twice that kept for reuse.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
from contextlib import contextmanager

log = logging.getLogger("deadtree")

M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2
# glibc's own ceiling for its adjusted threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX), and the trim
# threshold its adjustment pairs with it
RELAXED_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
RELAXED_TRIM_THRESHOLD_BYTES = 2 * RELAXED_MMAP_THRESHOLD_BYTES

_lock = threading.Lock()
_runs = 0


@contextmanager
def bounded_heap():
    """The run's heap settings while any run in the process is inside; relaxed when the last one leaves."""
    global _runs
    with _lock:
        _runs += 1
        if _runs == 1:
            _set(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            _set(M_ARENA_MAX, ARENAS)
            # memory kept for reuse since the last run goes back first: a run's peak is its own
            if _libc() is not None:
                _libc().malloc_trim(0)
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                _set(M_MMAP_THRESHOLD, RELAXED_MMAP_THRESHOLD_BYTES)
                _set(M_TRIM_THRESHOLD, RELAXED_TRIM_THRESHOLD_BYTES)


def _set(parameter: int, value: int) -> None:
    libc = _libc()
    if libc is not None and libc.mallopt(parameter, value) != 1:
        log.debug("mallopt refused setting %d to %d", parameter, value)


@functools.cache
def _libc():
    """glibc, or None where the C library is another (no mallopt there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None
