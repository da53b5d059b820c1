"""A fixed number of worker threads that take queued jobs from the store and run the pipeline on them.

Threads rather than processes: ONNX Runtime and GDAL do their heavy work with the GIL released, progress and
cancellation stay simple, and nothing is re-imported per job. The store is the queue, so a worker that finds
nothing waits on a semaphore that each submission releases (with a short poll as a safety net).
"""
from __future__ import annotations

import errno
import logging
import threading
import time
from typing import Callable

from rasterio.errors import RasterioError

from deadtree.errors import DeadtreeError
from deadtree.pipeline import SegmentResult, segment_scene
from deadtree.runtime.model_sessions import ModelSessions

from service.errors import ApiError, from_deadtree
from service.jobfiles import JobFiles
from service.options import JobOptions
from service.preflight import scrubbed
from service.settings import Settings
from service.store import Job, JobStore

log = logging.getLogger("deadtree.service")
PROGRESS_WRITE_INTERVAL_S = 0.5
IDLE_POLL_S = 1.0


class JobInterrupted(Exception):
    """Raised from the progress callback to abandon a job: it was deleted, or the server is stopping."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WorkerPool:
    def __init__(self, store: JobStore, files: JobFiles, settings: Settings,
                 on_finished: Callable[[str], None] = lambda job_id: None):
        self.store = store
        self.files = files
        self.settings = settings
        self.on_finished = on_finished
        self._wake = threading.Semaphore(0)
        self._stopping = threading.Event()
        self._cancel_lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._threads: list[threading.Thread] = []
        # the workers' model sessions, kept between jobs (each session serves one job at a time)
        self.sessions = ModelSessions()

    def start(self) -> None:
        for index in range(self.settings.workers):
            # Daemon threads: a job stuck in native code must not keep a stopping server alive. Whatever it was
            # doing is still marked running in the store and is run again after the restart.
            thread = threading.Thread(target=self._loop, name=f"deadtree-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask running jobs to put themselves back in the queue, and wait a little for the workers."""
        self._stopping.set()
        for _ in self._threads:
            self._wake.release()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.release()

    def cancel(self, job_id: str) -> None:
        with self._cancel_lock:
            self._cancelled.add(job_id)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.store.claim_next()
            except Exception:  # e.g. the disk is full: keep the worker alive and try again later
                log.exception("could not take a job from the queue")
                job = None
                time.sleep(IDLE_POLL_S)
            if job is None:
                self._wake.acquire(timeout=IDLE_POLL_S)
                continue
            try:
                self._run(job)
            except Exception:
                log.exception("job %s: the worker failed to record its outcome", job.id)
            finally:
                with self._cancel_lock:
                    self._cancelled.discard(job.id)
                self.on_finished(job.id)

    def _run(self, job: Job) -> None:
        options = JobOptions.from_dict(job.options)
        scene = self.files.scene(job.id)
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        try:
            result = self._segment(job, options)
        except JobInterrupted as interruption:
            if interruption.reason == "stopping":
                self.store.requeue(job.id)
                log.info("job %s: put back in the queue for the next start", job.id)
            else:
                self.files.remove(job.id)
                log.info("job %s: cancelled", job.id)
            return
        except ApiError as error:
            self._fail(job, scrubbed(error, scene, job.filename))
            return
        except DeadtreeError as exc:
            self._fail(job, scrubbed(from_deadtree(exc), scene, job.filename))
            return
        except (OSError, RasterioError) as exc:
            if disk_full(exc):  # the server's problem, and likely to pass
                self._fail(job, ApiError(507, "insufficient_storage", "the server's disk filled up while writing "
                                         "the result; try again later"))
            elif isinstance(exc, RasterioError):  # the pipeline wraps GDAL's read errors: a safety net
                self._fail(job, ApiError(422, "invalid_scene", f"{job.filename} cannot be read: the file is "
                                         "truncated or damaged"))
            else:
                log.exception("job %s: unexpected failure", job.id)
                self._fail(job, ApiError(500, "internal_error", "segmentation failed unexpectedly; it is logged"))
            return
        except MemoryError:
            self._fail(job, ApiError(413, "raster_too_large", f"{job.filename} needs more memory than this "
                                     "server has: split the scene into parts"))
            return
        except Exception:
            log.exception("job %s: unexpected failure", job.id)
            self._fail(job, ApiError(500, "internal_error", "segmentation failed unexpectedly; it is logged"))
            return
        self.files.drop_scene(job.id)
        if not self.store.succeed(job.id, summarise(result)):
            self.files.remove(job.id)  # deleted while it ran: nobody wants the result
            return
        log.info("job %s: %s", job.id, result.summary())

    def _segment(self, job: Job, options: JobOptions) -> SegmentResult:
        segment_options = options.segment_options(
            geojson=self.files.result(job.id, "geojson"),
            gpkg=self.files.result(job.id, "gpkg") if options.format == "gpkg" else None,
            device=self.settings.device, max_pixels=self.settings.max_pixels, source_name=job.filename,
        )
        return segment_scene(self.files.scene(job.id), segment_options, self._progress_reporter(job.id),
                             sessions=self.sessions, stop=lambda: self._check_stop(job.id))

    def _check_stop(self, job_id: str, fraction: float = 0.0) -> None:
        """Raise JobInterrupted when the job was deleted or the server is stopping: called before every model
        call and with every progress report."""
        with self._cancel_lock:
            cancelled = job_id in self._cancelled
        if cancelled:
            raise JobInterrupted("cancelled")
        if self._stopping.is_set() and fraction < 1.0:
            raise JobInterrupted("stopping")

    def _progress_reporter(self, job_id: str) -> Callable[[float], None]:
        last_write = 0.0

        def report(fraction: float) -> None:
            nonlocal last_write
            self._check_stop(job_id, fraction)
            now = time.monotonic()
            if now - last_write >= PROGRESS_WRITE_INTERVAL_S or fraction >= 1.0:
                last_write = now
                self.store.set_progress(job_id, round(min(max(fraction, 0.0), 1.0), 4))

        return report

    def _fail(self, job: Job, error: ApiError) -> None:
        self.files.drop_scene(job.id)
        if not self.store.fail(job.id, {"status": error.status, "code": error.code, "detail": error.detail}):
            self.files.remove(job.id)
        log.info("job %s: failed: %s", job.id, error.detail)


def disk_full(exc: BaseException) -> bool:
    """Whether an error (Python's, or GDAL's through rasterio) says the disk has no room left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "no space left on device" in str(exc).lower()


def summarise(result: SegmentResult) -> dict:
    return {
        "polygons": result.polygons,
        "area_m2": round(result.area_m2, 2),
        "seconds": round(result.seconds, 3),
        "model": result.model,
        "model_version": result.model_version,
        "translator": result.translator,
        "provider": result.provider,
        "tiles": result.tiles,
        "tiles_skipped": result.tiles_skipped,
        "min_peak": result.min_peak,
        "faint_dropped": result.faint_dropped,
    }
