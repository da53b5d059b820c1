"""Jobs and their state in SQLite: the queue itself lives here, so a restart loses nothing that was accepted.

One connection shared by the threads behind one lock: every statement is short, and SQLite serialises writers
anyway. WAL mode with synchronous=NORMAL keeps each commit durable when the process dies (not the machine).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
FINISHED = (SUCCEEDED, FAILED)
# Kinds: "job" is polled by its client (POST /v1/jobs); "sync" has a client waiting on the open request
# (POST /v1/segment): after a restart nobody waits for it any more, so it is dropped rather than re-run.
JOB, SYNC = "job", "sync"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    filename TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    options: dict
    filename: str
    progress: float
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: dict | None  # {"status", "code", "detail"}
    summary: dict | None  # what segment_scene reported, for a succeeded job

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        return cls(
            id=row["id"], kind=row["kind"], state=row["state"], options=json.loads(row["options"]),
            filename=row["filename"], progress=row["progress"], attempts=row["attempts"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            error=json.loads(row["error"]) if row["error"] else None,
            summary=json.loads(row["summary"]) if row["summary"] else None,
        )


@dataclass(frozen=True)
class Recovery:
    requeued: list[str]
    failed: list[str]
    dropped: list[str]  # sync jobs nobody waits for any more: their folders are to be removed


class JobStore:
    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, kind: str, options: dict, filename: str, queue_limit: int) -> bool:
        """Queue a job unless `queue_limit` jobs already wait: False then (the caller answers 503)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                waiting = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]
                if waiting >= queue_limit:
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute(
                    "INSERT INTO jobs (id, kind, state, options, filename, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, kind, QUEUED, json.dumps(options), filename, time.time()),
                )
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def queued_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def claim_next(self) -> Job | None:
        """The oldest queued job, now marked running by this caller (atomic: two workers never share one)."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = ?, started_at = ?, progress = 0, attempts = attempts + 1 "
                "WHERE id = (SELECT id FROM jobs WHERE state = ? ORDER BY created_at, rowid LIMIT 1) RETURNING *",
                (RUNNING, time.time(), QUEUED),
            ).fetchone()
        return Job.from_row(row) if row else None

    def set_progress(self, job_id: str, fraction: float) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND state = ?", (fraction, job_id, RUNNING))

    def succeed(self, job_id: str, summary: dict) -> bool:
        """False when the job was deleted meanwhile (its files are then the caller's to remove)."""
        return self._finish(job_id, SUCCEEDED, None, summary)

    def fail(self, job_id: str, error: dict) -> bool:
        return self._finish(job_id, FAILED, error, None)

    def _finish(self, job_id: str, state: str, error: dict | None, summary: dict | None) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, progress = ?, error = ?, summary = ? "
                "WHERE id = ? AND state = ?",
                (state, time.time(), 1.0 if state == SUCCEEDED else 0.0,
                 json.dumps(error) if error else None, json.dumps(summary) if summary else None, job_id, RUNNING),
            )
        return cursor.rowcount == 1

    def requeue(self, job_id: str) -> None:
        """Put back a job interrupted by a clean shutdown; the attempt does not count against it."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, started_at = NULL, progress = 0, attempts = MAX(attempts - 1, 0) "
                "WHERE id = ? AND state = ?", (QUEUED, job_id, RUNNING))

    def delete(self, job_id: str) -> Job | None:
        """Remove a job and return it as it was, so the caller knows whether a worker still holds it."""
        with self._lock:
            row = self._db.execute("DELETE FROM jobs WHERE id = ? RETURNING *", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def recover(self, max_attempts: int) -> Recovery:
        """After a restart: jobs that were running go back to the queue (or fail, if they keep killing the
        server); sync jobs whose client has gone are dropped."""
        error = json.dumps({"status": 500, "code": "interrupted",
                            "detail": f"the server stopped while running this job {max_attempts} times; "
                                      "it is not retried again"})
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = [r[0] for r in self._db.execute(
                    "DELETE FROM jobs WHERE kind = ? AND state IN (?, ?) RETURNING id", (SYNC, QUEUED, RUNNING))]
                failed = [r[0] for r in self._db.execute(
                    "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE state = ? AND attempts >= ? "
                    "RETURNING id", (FAILED, time.time(), error, RUNNING, max_attempts))]
                requeued = [r[0] for r in self._db.execute(
                    "UPDATE jobs SET state = ?, started_at = NULL, progress = 0 WHERE state = ? RETURNING id",
                    (QUEUED, RUNNING))]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Recovery(requeued, failed, dropped)

    def expire(self, finished_before: float) -> list[str]:
        """Delete finished jobs older than the cut-off; returns their ids so their files can go too."""
        with self._lock:
            rows = self._db.execute(
                "DELETE FROM jobs WHERE state IN (?, ?) AND finished_at < ? RETURNING id",
                (*FINISHED, finished_before)).fetchall()
        return [r[0] for r in rows]

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM jobs")}
