"""`deadtree segment-many`: many scenes in parallel on Dask distributed, resumable, merged at the end.

Each scene is one Dask task that writes OUT_DIR/<stem>.geojson and OUT_DIR/<stem>.gpkg through segment_scene
(atomic renames), then a small JSON marker in OUT_DIR/.done/. The marker is written last, and atomically, so a
scene counts as done only when both outputs are complete: a run killed mid-scene redoes that scene next time,
and one that finished is skipped. The marker also records the scene's size and time stamp and the options, so
a changed scene or a different --threshold is redone rather than silently reused.

Workers read the scenes and write OUT_DIR themselves, so with --scheduler (a remote cluster) both must be on a
file system the workers see under the same paths, and deadtree must be installed on the workers. Model names
are looked up on the workers too (their DEADTREE_MODELS or installed models); the workers of the local cluster
inherit this process's environment.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deadtree.errors import DeadtreeError, InputError
from deadtree.options import SegmentOptions
from deadtree.outputs import discard_workspaces
from deadtree.vector.merge import MergeSummary, check_merged_target, merge_scene_layers

log = logging.getLogger("deadtree")
DONE_FOLDER = ".done"
SCENE_SUFFIXES = (".tif", ".tiff")
CONNECT_TIMEOUT = "10s"


@dataclass
class BatchOptions:
    out_dir: Path
    scheduler: str | None = None  # tcp://host:port of a running cluster; None starts a local one
    workers: int | None = None  # local cluster only; default: one per core
    merged: Path | None = None  # default OUT_DIR/merged.gpkg
    segment: SegmentOptions = field(default_factory=SegmentOptions)  # what each scene runs with
    progress: bool = True

    def settings(self) -> dict:
        """What decides a scene's result; a marker made with other settings does not count as done. Model
        files as absolute paths: workers may not share the caller's working folder."""
        settings = self.segment.settings()
        settings["model"] = _portable(settings.get("model"))
        settings["translator"] = _portable(settings.get("translator"))
        settings["ensemble"] = [_portable(m) for m in settings.get("ensemble") or ()]
        return settings


def _portable(model: str | None) -> str | None:
    """A model file as an absolute path: workers may not share the caller's working folder. Names pass as they are."""
    if model and (model.endswith(".onnx") or os.sep in model):
        return str(Path(model).resolve())
    return model


@dataclass
class SceneOutcome:
    scene: str  # file name, as the user knows it
    ok: bool
    polygons: int = 0
    area_m2: float = 0.0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BatchResult:
    scenes: int
    segmented: list[SceneOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[SceneOutcome] = field(default_factory=list)
    merged: MergeSummary | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (f"{_count(self.scenes, 'scene')}: {len(self.segmented)} segmented, {len(self.skipped)} already done, "
                f"{len(self.failed)} failed")
        if self.failed:
            text += f" ({', '.join(o.scene for o in self.failed)})"
        if self.merged:
            m = self.merged
            text += (f"; {_count(m.polygons, 'polygon')} from {_count(m.scenes, 'scene')} merged into {m.path} "
                     f"({m.crs}, {m.crs_reason})")
        else:
            text += "; no scene succeeded, so no merged file was written"
        return text


def find_scenes(patterns: list[str]) -> list[Path]:
    """Expand glob patterns (quoted, so the shell leaves them alone), plain files and folders of GeoTIFFs."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        if Path(pattern).is_dir():
            matches = [str(p) for p in sorted(Path(pattern).iterdir()) if p.suffix.lower() in SCENE_SUFFIXES]
            nested = _nested_scenes(Path(pattern))
            hint = f"'{Path(pattern) / '**' / '*.tif'}' (quoted) takes them too"
            missing = f"folder {pattern} holds no .tif files" + \
                (f"; its subfolders hold {nested}: {hint}" if nested else "")
            if matches and nested:
                log.warning("%s: %s in its subfolders left out; %s", pattern, _count(nested, "GeoTIFF"), hint)
        else:
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            missing = f"{pattern} matches no files" if glob.has_magic(pattern) else f"{pattern}: no such file"
        if not matches:
            raise InputError(missing)
        for match in matches:
            if Path(match).is_file():
                found[Path(match).resolve()] = None
    scenes = list(found)
    if not scenes:
        raise InputError(f"{' '.join(patterns)} matches no files")
    by_stem: dict[str, Path] = {}
    for scene in scenes:
        other = by_stem.setdefault(scene.stem, scene)
        if other != scene:
            raise InputError(f"{other} and {scene} would both write {scene.stem}.geojson: rename one, or run them "
                             "into different --out-dir folders")
    return scenes


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _nested_scenes(folder: Path) -> int:
    """GeoTIFFs in the subfolders of `folder`, which a folder argument does not take."""
    return sum(1 for sub in folder.iterdir() if sub.is_dir()
               for p in sub.rglob("*") if p.suffix.lower() in SCENE_SUFFIXES)


def scene_outputs(out_dir: Path, scene: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"geojson": out_dir / f"{scene.stem}.geojson", "gpkg": out_dir / f"{scene.stem}.gpkg",
            "marker": out_dir / DONE_FOLDER / f"{scene.stem}.json"}


def _fingerprint(scene: Path) -> dict:
    stat = scene.stat()
    return {"scene": str(scene), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_done(scene: Path, out_dir: Path, settings: dict) -> bool:
    files = scene_outputs(out_dir, scene)
    try:
        marker = json.loads(files["marker"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same_input = {k: marker.get(k) for k in ("scene", "size", "mtime_ns")} == _fingerprint(scene)
    return (same_input and marker.get("settings") == settings
            and files["geojson"].is_file() and files["gpkg"].is_file())


def segment_one(scene: str, out_dir: str, settings: dict) -> SceneOutcome:
    """The Dask task. Every failure comes back as an outcome, so one bad scene never stops the others."""
    from deadtree.pipeline import segment_scene

    scene_path = Path(scene)
    files = scene_outputs(Path(out_dir), scene_path)
    try:
        # An old marker must not outlive outputs this run is about to replace.
        files["marker"].unlink(missing_ok=True)
        # one scene per single-threaded worker: more model threads would oversubscribe
        options = SegmentOptions.from_settings(settings, output=files["geojson"], gpkg=files["gpkg"], threads=1)
        result = segment_scene(scene_path, options, sessions=_worker_sessions())
        marker = {**_fingerprint(scene_path), "settings": settings, "polygons": result.polygons,
                  "area_m2": round(result.area_m2, 2), "model": result.model,
                  "model_version": result.model_version, "seconds": round(result.seconds, 2)}
        _write_json_atomically(files["marker"], marker)
        return SceneOutcome(scene_path.name, True, result.polygons, result.area_m2, result.seconds)
    except Exception as exc:  # noqa: BLE001 - reported per scene; the batch goes on
        return SceneOutcome(scene_path.name, False, error=one_line(exc))


def _worker_sessions():
    """The model sessions of the Dask worker this task runs on, kept on the worker for its next scenes; None
    outside a worker."""
    from deadtree.runtime.model_sessions import ModelSessions

    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    if not hasattr(worker, "deadtree_sessions"):
        worker.deadtree_sessions = ModelSessions()
    return worker.deadtree_sessions


def one_line(exc: BaseException) -> str:
    """What `segment` would say about a failed scene, in one line: deadtree's own message; GDAL's reading
    errors as an unreadable scene; memory as memory; anything else as an unexpected error with its type,
    which is what a bug report needs."""
    from rasterio.errors import RasterioError

    from deadtree.raster.scene import unreadable

    if isinstance(exc, DeadtreeError):
        text = str(exc)
    elif isinstance(exc, RasterioError):  # GDAL's own message, as `segment` words an unreadable scene
        text = str(unreadable("the scene", exc))
    elif isinstance(exc, MemoryError):
        text = "the scene needs more memory than this worker has: split it into parts"
    else:
        text = f"unexpected error, please report it ({type(exc).__name__}: {_first(str(exc))})"
    return _first(text) or type(exc).__name__


def _first(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


@contextmanager
def dask_client(scheduler: str | None, workers: int):
    """A client on the given cluster, or on a local one of `workers` processes with one thread each.

    Processes rather than threads, because polygonising and writing a scene is Python code that holds the GIL;
    one thread each, because one scene at a time per core is what keeps the cores busy without thrashing.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError(f"segment-many needs Dask: pip install 'deadtree[cluster]' ({exc})") from exc
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {detail}") from exc
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_batch(scenes: list[Path], options: BatchOptions,
              echo: Callable[[str], None] | None = None) -> BatchResult:
    """Segment the scenes not yet done, report each failure as it happens, then merge everything done."""
    from deadtree.runtime.session import cpu_threads

    echo = echo or _echo_stderr
    out_dir = Path(options.out_dir)
    merged_path = Path(options.merged) if options.merged else out_dir / "merged.gpkg"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out-dir {out_dir}: {exc.strerror}") from exc
    check_merged_target(merged_path)
    _check_no_clash(merged_path, out_dir, scenes)
    if options.workers is not None and options.workers < 1:
        raise InputError("--workers must be at least 1")
    # Checked here too: an option every scene would reject should fail once, before the cluster starts.
    options.segment.check()
    settings = options.settings()

    result = BatchResult(len(scenes))
    pending = []
    for scene in scenes:
        if is_done(scene, out_dir, settings):
            result.skipped.append(scene.name)
        else:
            pending.append(scene)
    if result.skipped:
        echo(f"{len(result.skipped)} of {len(scenes)} scenes already done in {out_dir}: skipping them")
    if pending:
        if options.scheduler and options.workers:
            echo("note: --workers applies to the local cluster only; the cluster at --scheduler keeps its own")
        workers = min(options.workers or cpu_threads(), len(pending))
        started = time.time()
        try:
            with dask_client(options.scheduler, workers) as client:
                _run_pending(client, pending, out_dir, settings, options.progress, result, echo)
        except KeyboardInterrupt:
            # the cluster is shut down by now: the scenes its workers were writing left their work folders
            discard_workspaces(out_dir, started)
            raise

    done = {s.name: scene_outputs(out_dir, s)["gpkg"] for s in scenes if is_done(s, out_dir, settings)}
    if done:
        result.merged = merge_scene_layers(done, merged_path)
    return result


def _run_pending(client, pending: list[Path], out_dir: Path, settings: dict, progress: bool,
                 result: BatchResult, echo) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    # Largest first, so a big scene does not start last and leave the other workers idle at the end.
    pending = sorted(pending, key=lambda p: p.stat().st_size, reverse=True)
    futures = {client.submit(segment_one, str(scene), str(out_dir.resolve()), settings, pure=False): scene
               for scene in pending}
    with tqdm(total=len(futures), unit="scene", desc="segmenting", disable=not progress, dynamic_ncols=True,
              file=sys.stderr) as bar:
        for future in as_completed(futures):
            scene = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - the worker itself died (memory, a crash in native code)
                outcome = SceneOutcome(scene.name, False, error=f"worker failed: {one_line(exc)}")
            if outcome.ok:
                result.segmented.append(outcome)
            else:
                result.failed.append(outcome)
                echo(f"failed: {outcome.scene}: {outcome.error}")
            bar.update(1)


def _check_no_clash(merged: Path, out_dir: Path, scenes: list[Path]) -> None:
    own = {p.resolve() for s in scenes for key, p in scene_outputs(out_dir, s).items() if key != "marker"}
    if merged.resolve() in own:
        raise InputError(f"--merged {merged} is also a scene's own output: choose another name")


def _echo_stderr(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
