"""Liveness and readiness: open to all, so an orchestrator needs no API key to probe them."""
from __future__ import annotations

import os
import shutil

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process answers", response_model=Health)
async def healthz() -> Health:
    # async and trivial on purpose: it answers from the event loop, so it shows the loop is not blocked
    return Health(status="ok")


@router.get("/readyz", summary="Ready to take work: database, workers, data folder and models",
            response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready."}})
def readyz(request: Request):
    state = request.app.state.service
    checks = {
        "database": _check(lambda: state.store.queued_count() >= 0, "the job database cannot be read"),
        "workers": "ok" if state.pool.alive() else "a worker thread has stopped",
        "data_dir": _data_dir(state.settings.data_dir),
        "models": "ok" if state.segmenters else "no segmenter model was installed when the server started",
    }
    ready = all(outcome == "ok" for outcome in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


MIN_FREE_BYTES = 64 * 1024 * 1024  # below this a job's result may not fit: take no more work


def _data_dir(folder) -> str:
    if not os.access(folder, os.W_OK | os.X_OK):
        return "the data folder is not writable"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "the data folder cannot be read"
    return "ok" if free >= MIN_FREE_BYTES else f"the data folder's disk is full ({free // 1024**2} MiB free)"


def _check(probe, failure: str) -> str:
    try:
        return "ok" if probe() else failure
    except Exception:
        return failure
