"""Liveness and readiness: open to all, so an orchestrator needs no API key to probe them."""
from __future__ import annotations

import os

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
        "data_dir": "ok" if os.access(state.settings.data_dir, os.W_OK | os.X_OK) else "the data folder is not writable",
        "models": "ok" if state.segmenters else "no segmenter model was installed when the server started",
    }
    ready = all(outcome == "ok" for outcome in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _check(probe, failure: str) -> str:
    try:
        return "ok" if probe() else failure
    except Exception:
        return failure
