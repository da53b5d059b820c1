"""Everything a running service holds (store, workers, files), started and stopped together."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from service.errors import ApiError
from service.housekeeping import ExpiryThread, expire_results, recover
from service.jobfiles import JobFiles
from service.models import shipped
from service.options import JobOptions
from service.settings import Settings
from service.store import JobStore
from service.uploads import Upload
from service.waiters import JobWaiters
from service.workers import WorkerPool

log = logging.getLogger("deadtree.service")


@dataclass
class ServiceState:
    settings: Settings
    store: JobStore
    files: JobFiles
    waiters: JobWaiters
    pool: WorkerPool
    expiry: ExpiryThread
    segmenters: int  # counted once at start: listing reads every model file, too slow for each probe

    @classmethod
    def start(cls, settings: Settings) -> "ServiceState":
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.database)
        files = JobFiles(settings.jobs_dir)
        recover(store, files, settings)
        expire_results(store, files, settings.result_ttl_s)
        waiters = JobWaiters()
        pool = WorkerPool(store, files, settings, on_finished=waiters.notify)
        expiry = ExpiryThread(store, files, settings)
        segmenters = len(shipped("segmenter"))
        pool.start()
        expiry.start()
        log.info("deadtree service: data in %s, %d worker(s), queue limit %d", settings.data_dir,
                 settings.workers, settings.queue_limit)
        return cls(settings, store, files, waiters, pool, expiry, segmenters)

    def stop(self) -> None:
        self.expiry.stop()
        self.pool.stop()
        self.store.close()

    def queue_full_error(self) -> ApiError:
        return ApiError(503, "queue_full",
                        f"{self.settings.queue_limit} jobs are already waiting; try again in "
                        f"{self.settings.retry_after_s} s", {"Retry-After": str(self.settings.retry_after_s)})

    def refuse_if_queue_full(self) -> None:
        """Cheap early check, so a busy server does not take in an upload it would refuse anyway."""
        if self.store.queued_count() >= self.settings.queue_limit:
            raise self.queue_full_error()

    def enqueue(self, upload: Upload, job_id: str, kind: str, options: JobOptions) -> None:
        """Move the upload into the job's folder first, then queue: a worker must never see a job without its
        scene. (A crash in between leaves a folder no job owns, which the next start removes.)"""
        self.files.adopt_upload(upload.path, job_id)
        if not self.store.create(job_id, kind, options.to_dict(), upload.filename, self.settings.queue_limit):
            self.files.remove(job_id)
            raise self.queue_full_error()
        self.pool.wake()

    def discard_job(self, job_id: str) -> None:
        self.store.delete(job_id)
        self.files.remove(job_id)
