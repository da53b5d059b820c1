"""The /v1 endpoints: segment a scene now, or as a job to poll; read, fetch and delete jobs; list the models.

The upload endpoints are `async` because they stream the body; everything that blocks (opening rasters,
SQLite, moving files) is sent to a thread. The other endpoints are plain `def`, which FastAPI runs in its
thread pool for the same reason.
"""
from __future__ import annotations

import asyncio

import time
from datetime import datetime, timezone

import anyio
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from service.errors import ApiError
from service.jobfiles import JOB_ID_PATTERN, MEDIA_TYPES, new_job_id
from service.models import describe, shipped
from service.options import JobOptions
from service.preflight import check_upload
from service.schemas import (
    RESULT_CONTENT,
    JobStatus,
    ModelList,
    error_responses,
    upload_request_body,
)
from service.state import ServiceState
from service.store import FAILED, JOB, QUEUED, RUNNING, SUCCEEDED, SYNC, Job
from service.uploads import Upload, receive_scene

MB = 1024 * 1024
JobId = Path(pattern=JOB_ID_PATTERN, description="The id POST /v1/jobs answered with.",
             examples=["3f2b8c1e9a7d4e6f8b0c2d4e6f8a0b1c"])


def service_state(request: Request) -> ServiceState:
    return request.app.state.service


router = APIRouter(prefix="/v1")


@router.post(
    "/segment", tags=["segment"], summary="Segment a scene and answer with the polygons",
    response_class=Response,
    responses={200: {"description": "The dead-tree polygons, in the format asked for.", "content": RESULT_CONTENT},
               **error_responses(400, 401, 413, 415, 422, 503, 507)},
    openapi_extra={"requestBody": upload_request_body(
        "The GeoTIFF in the field `file`, and options. For small scenes only (see DEADTREE_SYNC_MAX_UPLOAD_MB "
        "and DEADTREE_SYNC_MAX_PIXELS): larger ones get 413 and go to POST /v1/jobs.")},
)
async def segment_now(request: Request, state: ServiceState = Depends(service_state)) -> Response:
    """Upload one GeoTIFF and wait for its dead-tree polygons in the same request.

    Runs on the same bounded worker pool as jobs: when the queue is full the answer is 503 with Retry-After.
    """
    settings = state.settings
    await run_in_threadpool(state.refuse_if_queue_full)
    upload = await receive_scene(
        request, settings.uploads_dir, settings.sync_max_upload_bytes,
        f"the upload is larger than POST /v1/segment takes ({settings.sync_max_upload_bytes / MB:g} MiB): submit "
        f"it to POST /v1/jobs instead (up to {settings.max_upload_bytes / MB:g} MiB)")
    job_id = new_job_id()
    finished = state.waiters.register(job_id)
    try:
        options = await _checked_options(state, upload, sync=True)
        await run_in_threadpool(state.enqueue, upload, job_id, SYNC, options)
    except BaseException:
        state.waiters.forget(job_id)
        await _discard_upload(upload)
        raise
    if not await _finished_or_client_gone(request, finished):
        # nobody will read the answer: the work stops at its next model call, and the job and its files go
        state.waiters.forget(job_id)
        await run_in_threadpool(_abandon_sync_job, state, job_id)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    job = await run_in_threadpool(state.store.get, job_id)
    if job is None or job.state not in (SUCCEEDED, FAILED):
        # The server is stopping: the job went back to the queue, where nobody will wait for it.
        raise ApiError(503, "shutting_down", "the server is restarting; send the scene again shortly",
                       {"Retry-After": str(settings.retry_after_s)})
    if job.state == FAILED:
        await run_in_threadpool(state.discard_job, job_id)
        error = job.error or {}
        status = error.get("status", 500)
        raise ApiError(status, error.get("code", "internal_error"), error.get("detail", "segmentation failed"),
                       {"Retry-After": str(settings.retry_after_s)} if status in (503, 507) else None)
    return _result_file(state, job, cleanup=BackgroundTask(state.discard_job, job_id))


@router.post(
    "/jobs", tags=["jobs"], summary="Submit a scene of any size as a job", status_code=202,
    response_model=JobStatus,
    responses={202: {"description": "Queued. Poll the job at the Location header.",
                     "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}}},
               **error_responses(400, 401, 413, 415, 422, 503, 507)},
    openapi_extra={"requestBody": upload_request_body("The GeoTIFF in the field `file`, and options.")},
)
async def submit_job(request: Request, response: Response, state: ServiceState = Depends(service_state)) -> JobStatus:
    """Upload one GeoTIFF; the scene is checked from its header at once, then queued.

    Poll GET /v1/jobs/{id} until the state is succeeded or failed, then GET /v1/jobs/{id}/result.
    """
    settings = state.settings
    await run_in_threadpool(state.refuse_if_queue_full)
    upload = await receive_scene(request, settings.uploads_dir, settings.max_upload_bytes,
                                 f"the upload is larger than this server takes ({settings.max_upload_bytes / MB:g} MiB)")
    job_id = new_job_id()
    try:
        options = await _checked_options(state, upload, sync=False)
        await run_in_threadpool(state.enqueue, upload, job_id, JOB, options)
    except BaseException:
        await _discard_upload(upload)
        raise
    job = await run_in_threadpool(state.store.get, job_id)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return job_status(job, state)


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job's state, progress and timings",
            response_model=JobStatus, responses=error_responses(401, 404, 422))
def get_job(job_id: str = JobId, state: ServiceState = Depends(service_state)) -> JobStatus:
    return job_status(_find_job(state, job_id), state)


@router.get(
    "/jobs/{job_id}/result", tags=["jobs"], summary="The polygons of a succeeded job", response_class=Response,
    responses={200: {"description": "The dead-tree polygons, in the format the job asked for.",
                     "content": RESULT_CONTENT}, **error_responses(401, 404, 409, 422)},
)
def get_job_result(job_id: str = JobId, state: ServiceState = Depends(service_state)) -> Response:
    job = _find_job(state, job_id)
    if job.state in (QUEUED, RUNNING):
        raise ApiError(409, "not_finished", f"the job is {job.state} ({job.progress:.0%} done); poll "
                       f"GET /v1/jobs/{job_id} until it has succeeded",
                       {"Retry-After": "5"})
    if job.state == FAILED:
        raise ApiError(409, "job_failed", f"the job failed: {(job.error or {}).get('detail', 'unknown error')}")
    return _result_file(state, job)


@router.delete("/jobs/{job_id}", tags=["jobs"], summary="Cancel a job, or delete a finished one and its result",
               status_code=204, response_class=Response, responses=error_responses(401, 404, 422))
def delete_job(job_id: str = JobId, state: ServiceState = Depends(service_state)) -> Response:
    job = state.store.delete(job_id)
    if job is None or job.kind != JOB:
        raise _no_such_job(job_id)
    if job.state == RUNNING:
        state.pool.cancel(job_id)  # the worker stops before its next model call and removes the files itself
    else:
        state.files.remove(job_id)
    return Response(status_code=204)


@router.get("/models", tags=["models"], summary="The shipped models, with their cards", response_model=ModelList,
            responses=error_responses(401))
def get_models() -> ModelList:
    return ModelList(models=[describe(m) for m in shipped()])


DISCONNECT_POLL_S = 1.0
CLIENT_CLOSED_REQUEST = 499  # nginx's code for a request its client abandoned: logged, never received


async def _finished_or_client_gone(request: Request, finished) -> bool:
    """Wait for the job; False as soon as the client has gone away (checked every DISCONNECT_POLL_S)."""
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout=DISCONNECT_POLL_S)
            return True
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return False


def _abandon_sync_job(state: ServiceState, job_id: str) -> None:
    job = state.store.delete(job_id)
    if job is not None and job.state == RUNNING:
        state.pool.cancel(job_id)  # the worker stops before its next model call and removes the files itself
    else:
        state.files.remove(job_id)


async def _checked_options(state: ServiceState, upload: Upload, sync: bool) -> JobOptions:
    settings = state.settings
    options = JobOptions.from_form(upload.fields)
    await run_in_threadpool(check_upload, upload.path, upload.filename, options, settings.max_pixels,
                            settings.sync_max_pixels if sync else None, settings.device)
    return options


async def _discard_upload(upload: Upload) -> None:
    """Remove a refused upload, even while the request is being cancelled (once queued, it is the job's)."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(upload.path.unlink, True)


def _find_job(state: ServiceState, job_id: str) -> Job:
    job = state.store.get(job_id)
    if job is None or job.kind != JOB:  # sync requests' jobs are internal: their result went with the answer
        raise _no_such_job(job_id)
    return job


def _no_such_job(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no job {job_id}: it never existed, was deleted, or its result expired")


def _result_file(state: ServiceState, job: Job, cleanup: BackgroundTask | None = None) -> FileResponse:
    fmt = job.options.get("format", "geojson")
    path = state.files.result(job.id, fmt)
    if not path.is_file():
        raise ApiError(404, "not_found", f"the result of job {job.id} is gone (expired or deleted)")
    stem = job.filename.rsplit(".", 1)[0] or "scene"
    summary = job.summary or {}
    headers = {"X-Deadtree-Polygons": str(summary.get("polygons", "")),
               "X-Deadtree-Model": f"{summary.get('model', '')} {summary.get('model_version', '')}".strip()}
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{stem}.deadtrees.{fmt}", headers=headers,
                        background=cleanup)


def job_status(job: Job, state: ServiceState) -> JobStatus:
    now = time.time()
    started, finished = job.started_at, job.finished_at
    queued_seconds = (started if started else (finished if finished else now)) - job.created_at
    run_seconds = ((finished or now) - started) if started else None
    fmt = job.options.get("format", "geojson")
    result = None
    if job.state == SUCCEEDED and job.summary:
        result = {"url": f"/v1/jobs/{job.id}/result", "media_type": MEDIA_TYPES[fmt], **job.summary}
    return JobStatus(
        id=job.id, state=job.state, progress=job.progress, filename=job.filename,
        options=JobOptions.from_dict(job.options).to_dict(),
        created_at=_utc(job.created_at), started_at=_utc(started), finished_at=_utc(finished),
        queued_seconds=round(max(queued_seconds, 0.0), 3),
        run_seconds=round(max(run_seconds, 0.0), 3) if run_seconds is not None else None,
        attempts=job.attempts, error=job.error, result=result,
        expires_at=_utc(finished + state.settings.result_ttl_s) if finished else None,
    )


def _utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc) if timestamp is not None else None
