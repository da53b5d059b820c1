"""Where a job's files live: <data>/jobs/<job id>/. Paths are built from generated ids only, never from
anything a client sent (its file name is kept as text for display, nothing more)."""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)
MEDIA_TYPES = {"geojson": "application/geo+json", "gpkg": "application/geopackage+sqlite3"}


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobFiles:
    def __init__(self, jobs_dir: Path):
        self.jobs_dir = Path(jobs_dir)

    def folder(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):  # belt and braces: ids are generated here, but never let one be a path
            raise ValueError(f"not a job id: {job_id!r}")
        return self.jobs_dir / job_id

    def scene(self, job_id: str) -> Path:
        return self.folder(job_id) / "scene.tif"

    def result(self, job_id: str, fmt: str) -> Path:
        return self.folder(job_id) / f"result.{fmt}"

    def adopt_upload(self, upload: Path, job_id: str) -> None:
        """Move a finished upload into the job's folder (same file system: a rename, no copy)."""
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(upload, self.scene(job_id))

    def drop_scene(self, job_id: str) -> None:
        """The upload is not needed once the job has finished: only results are kept."""
        try:
            self.scene(job_id).unlink(missing_ok=True)
        except OSError:
            pass

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def job_ids_on_disk(self) -> set[str]:
        if not self.jobs_dir.is_dir():
            return set()
        return {p.name for p in self.jobs_dir.iterdir() if p.is_dir() and _JOB_ID.match(p.name)}
