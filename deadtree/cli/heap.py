"""Keep the C heap from growing with the scene, for a CLI process that maps scenes and then exits.

A streamed run allocates and frees many arrays of a few MB from several threads. glibc then raises its mmap
threshold after each large free (up to 32 MB) and serves later arrays from per-thread heaps, which keep freed
memory and fragment: on a 400-megapixel scene the peak grew 38% over a 25-megapixel one, with nothing in the
pipeline itself growing. A fixed 128 KB threshold (large arrays always come from, and go back to, the kernel)
and two heaps held it to 19% (benchmarks/memory.py).

These settings are the whole process's, and they slow other work (torch eager maps every activation fresh
from the kernel under them and ran twice as slowly), so the library never makes them: the `segment` and
`segment-many` commands do, for their own processes, and the Docker image sets the same through glibc's
environment variables (docker/Dockerfile.cpu and Dockerfile.gpu).
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


def bound_this_process_heap() -> bool:
    """Apply the settings to this process; False where the C library is not glibc (nothing to set)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return False
    done = True
    for parameter, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_ARENA_MAX, ARENAS)):
        if libc.mallopt(parameter, value) != 1:
            log.debug("mallopt refused setting %d to %d", parameter, value)
            done = False
    libc.malloc_trim(0)  # what the heap kept for reuse goes back: it would serve large arrays from the heap still
    return done
