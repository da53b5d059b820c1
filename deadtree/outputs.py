"""Output paths: checked before any work, written under temporary names, renamed into place when complete."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from deadtree.errors import InputError


def check_writable(path: Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a folder: give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write {path}: permission denied")


# What each output holds, and the file names that say so. A GeoJSON written under "trees.gpkg" or "trees.shp"
# would open as nothing (or as garbage) in QGIS.
OUTPUT_SUFFIXES = {
    "geojson": ((".geojson", ".json"), "a GeoJSON name (.geojson); for a GeoPackage use --gpkg"),
    "gpkg": ((".gpkg",), "a GeoPackage name (.gpkg)"),
    "probabilities": ((".tif", ".tiff"), "a GeoTIFF name (.tif)"),
    "preview": ((".png",), "a PNG name (.png)"),
}


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(outputs: dict[str, Path], inputs: list[Path]) -> None:
    """Every output writable, named for what it holds (so no two share a name in the temporary folder), and
    not an input: a mistyped option must never overwrite the scene it was given."""
    for kind, path in outputs.items():
        check_writable(path)
        suffixes, expected = OUTPUT_SUFFIXES.get(kind, ((), ""))
        if suffixes and path.suffix.lower() not in suffixes:
            raise InputError(f"output {path} needs {expected}")
        for source in inputs:
            if _same_file(path, source):
                raise InputError(f"output {path} is the input scene itself: give another file name")


WORKSPACE_PREFIX = ".deadtree-"
OWNER_FILE = "owner"  # "HOST PID" of the process working in the folder
STALE_SECONDS = 24 * 3600  # a work folder untouched this long, whose owner cannot be asked, is left over


def workspace(near: Path) -> Path:
    """A private temporary folder beside the output, so the final rename stays on one file system. Work folders
    that killed runs left there are removed first (discard_stale_workspaces)."""
    parent = Path(near).parent if str(Path(near).parent) else Path(".")
    discard_stale_workspaces(parent)
    folder = Path(tempfile.mkdtemp(prefix=WORKSPACE_PREFIX, dir=parent))
    (folder / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
    return folder


def discard_stale_workspaces(parent: Path) -> int:
    """Remove the work folders in `parent` whose run is over: its process on this host is gone, or (another
    host's, or one without an owner) it has not been touched for STALE_SECONDS. Returns how many."""
    removed = 0
    for folder in Path(parent).glob(f"{WORKSPACE_PREFIX}*"):
        try:
            if folder.is_dir() and _is_stale(folder):
                discard(folder)
                removed += 1
        except OSError:  # another process removing it at the same time
            continue
    return removed


def _is_stale(folder: Path) -> bool:
    try:
        host, pid = (folder / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        host, pid = "", "0"
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    return time.time() - folder.stat().st_mtime > STALE_SECONDS


def discard_workspaces(folder: Path, since: float) -> int:
    """Remove the work folders in `folder` made at or after `since` (a time.time()): those of worker processes
    stopped mid-scene, which could not clean up after themselves. Returns how many."""
    stale = [p for p in Path(folder).glob(f"{WORKSPACE_PREFIX}*") if p.is_dir() and p.stat().st_mtime >= since]
    for path in stale:
        discard(path)
    return len(stale)


def publish(tmp: Path, final: Path) -> None:
    """Move a complete file into place atomically (copy to a hidden partial name first across devices)."""
    try:
        os.replace(tmp, final)
    except OSError:
        partial = final.parent / f".{final.name}.partial"
        shutil.copyfile(tmp, partial)
        os.replace(partial, final)


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
