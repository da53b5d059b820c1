"""Tidied int8 graphs kept on disk between processes, so a new `deadtree segment` opens one session.

Tidying a model (channels_last.py) opens ONNX Runtime's own session of it, saves and rewrites its optimised
graph, opens the result and checks it against the first on a test tile. That sits on the path to the first
tile of every command: opening `deadtree-rgbn-int8` took 1.13 s without this cache and 0.08 s with it on the
2-core AMD EPYC (AVX-512 VNNI) host of 2026-12-08 (0.13 against 0.015 s on the Intel VNNI host), and `segment`
on the 4096 px benchmark mosaic 6.50 s against 5.53 s (docs/performance.md). The outcome (the tidied graph, a
few MB, or the refusal when the check failed) is kept under the user's cache folder, named by everything it
depends on: the model file (path, size, modification time), ONNX Runtime's version, the optimisers left out,
the CPU's vector extensions, and the source of the rewriting code. Any change to one of them is a new name, so
nothing stale is ever read. The folder holds at most CACHE_LIMIT_BYTES; DEADTREE_CACHE_DIR names another, or,
empty, keeps nothing on disk. A folder that cannot be written is no error: the outcome is then simply worked
out again next time.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("deadtree")

ENV_CACHE_DIR = "DEADTREE_CACHE_DIR"  # where deadtree keeps its cache; empty: keep nothing on disk
MISSING = object()  # no outcome saved for this key (None is a saved refusal)
# An outcome is the size of its int8 model (2-4 MB for the shipped ones), and every upgrade of deadtree or ONNX
# Runtime names new outcomes: past this, the least recently used go.
CACHE_LIMIT_BYTES = 32 * 1024 * 1024


def cache_folder() -> Path | None:
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured == "":
        return None
    base = Path(configured) if configured else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deadtree"
    return base / "tidied-graphs"


@functools.lru_cache(maxsize=1)
def _rewriting_code() -> str:
    digest = hashlib.sha256()
    for name in ("channels_last.py", "graph_rewrites.py"):  # read, not imported: channels_last imports this module
        digest.update(Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()


def _name(key: tuple) -> str:
    from deadtree.machine import vector_extensions

    return hashlib.sha256(repr((key, vector_extensions(), _rewriting_code())).encode()).hexdigest()[:32]


def saved_outcome(key: tuple):
    """The tidied graph (bytes) saved for `key`, None for a saved refusal, or MISSING."""
    folder = cache_folder()
    if folder is None:
        return MISSING
    name = _name(key)
    try:
        if (folder / f"{name}.refused").exists():
            return None
        path = folder / f"{name}.onnx"
        graph = path.read_bytes()
        os.utime(path)  # used now: the last to go when the folder is trimmed
        return graph
    except OSError:
        return MISSING


def save_outcome(key: tuple, tidied: bytes | None) -> None:
    """Keep an outcome for later processes: written under a temporary name and renamed, so a reader never sees
    half a graph."""
    folder = cache_folder()
    if folder is None:
        return
    target = folder / (f"{_name(key)}.onnx" if tidied is not None else f"{_name(key)}.refused")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, prefix=".partial-")
        with os.fdopen(handle, "wb") as out:
            out.write(tidied or b"")
        os.replace(partial, target)
        _trim(folder, CACHE_LIMIT_BYTES)
    except OSError as exc:
        log.debug("could not keep the tidied graph in %s: %s", folder, exc)


def _trim(folder: Path, limit: int) -> None:
    """Delete the least recently used outcomes until the folder holds at most `limit` bytes (outcomes only: a
    `.partial-` file is another process's outcome being written)."""
    entries = []
    for path in [*folder.glob("*.onnx"), *folder.glob("*.refused")]:
        try:
            stat = path.stat()
        except OSError:  # another process trimming at the same time
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size
