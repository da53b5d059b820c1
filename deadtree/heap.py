"""Keep the C heap from growing with the scene on glibc (Linux).

A streamed run allocates and frees many arrays of a few MB from several threads. glibc then raises its mmap
threshold after each large free (up to 32 MB) and serves later arrays from per-thread heaps, which keep freed
memory and fragment: on a 400-megapixel scene the peak grew 38% over a 25-megapixel one, with nothing in the
pipeline itself growing. A fixed 128 KB threshold (large arrays always come from, and go back to, the
kernel) and two heaps held it to 19% (benchmarks/memory.py).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("deadtree")

M_MMAP_THRESHOLD = -3  # mallopt parameters from glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2
_done = False


def bound_heap_growth() -> bool:
    """Apply the settings once per process; False where the C library is not glibc."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_ARENA_MAX, ARENAS) == 1
    _done = ok
    if not ok:
        log.debug("mallopt refused the heap settings")
    return ok
