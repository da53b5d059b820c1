"""Start-up recovery and the periodic removal of expired results."""
from __future__ import annotations

import logging
import threading
import time

from service.jobfiles import JobFiles
from service.settings import Settings
from service.store import JobStore

log = logging.getLogger("deadtree.service")


def recover(store: JobStore, files: JobFiles, settings: Settings) -> None:
    """Make the store and the disk agree again after a stop, clean or not.

    Jobs that were running go back to the queue (their upload is still on disk: it is removed only when a job
    finishes); partial uploads and folders of jobs the store no longer knows are removed.
    """
    outcome = store.recover(settings.max_attempts)
    for job_id in outcome.dropped:
        files.remove(job_id)
    for job_id in outcome.failed:
        files.drop_scene(job_id)
    for job_id in files.job_ids_on_disk() - store.ids():
        files.remove(job_id)
    for partial in settings.uploads_dir.glob("*.part"):
        partial.unlink(missing_ok=True)
    if outcome.requeued or outcome.failed or outcome.dropped:
        log.info("recovered after a stop: %d job(s) back in the queue, %d failed after %d attempts, "
                 "%d unanswered sync request(s) dropped",
                 len(outcome.requeued), len(outcome.failed), settings.max_attempts, len(outcome.dropped))


def expire_results(store: JobStore, files: JobFiles, ttl_s: float, now: float | None = None) -> list[str]:
    """Forget finished jobs older than the time to live, and remove their files."""
    now = time.time() if now is None else now
    expired = store.expire(now - ttl_s)
    for job_id in expired:
        files.remove(job_id)
    if expired:
        log.info("removed %d expired job(s)", len(expired))
    return expired


class ExpiryThread:
    def __init__(self, store: JobStore, files: JobFiles, settings: Settings):
        self.store = store
        self.files = files
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deadtree-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_s):
            try:
                expire_results(self.store, self.files, self.settings.result_ttl_s)
            except Exception:  # a failed sweep is retried at the next interval
                log.exception("could not remove expired results")
