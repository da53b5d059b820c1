"""create_app(settings): the FastAPI application, wired from the small modules beside this one."""
from __future__ import annotations

from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from deadtree import __version__

from service import api, health
from service.auth import api_key_checker
from service.errors import install_error_handlers
from service.settings import Settings
from service.state import ServiceState

DESCRIPTION = """
Maps standing dead trees in aerial orthophotos: upload a GeoTIFF, get the dead-tree outlines as polygons.

* **Small scenes**: `POST /v1/segment` answers with the polygons in the same request.
* **Any size**: `POST /v1/jobs` queues the scene and answers `202` with the job's URL; poll `GET /v1/jobs/{id}`
  until it has `succeeded`, then `GET /v1/jobs/{id}/result`.

Errors are JSON: `{"status": 422, "code": "invalid_scene", "detail": "..."}`. When the server has an API key,
send it as `X-API-Key: <key>` or `Authorization: Bearer <key>` (the health checks need none).
"""

TAGS = [
    {"name": "segment", "description": "Segment a small scene in one request."},
    {"name": "jobs", "description": "Queue scenes of any size and fetch their results later."},
    {"name": "models", "description": "The shipped models and their cards."},
    {"name": "health", "description": "Probes for load balancers and orchestrators (no API key)."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Starting opens SQLite and may remove leftovers from a previous run: blocking work, kept off the loop.
        app.state.service = await anyio.to_thread.run_sync(ServiceState.start, settings)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(app.state.service.stop)

    app = FastAPI(title="deadtree", version=__version__, description=DESCRIPTION, openapi_tags=TAGS,
                  lifespan=lifespan)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Location", "Retry-After", "X-Deadtree-Polygons", "X-Deadtree-Model"],
        )
    app.include_router(health.router)
    guards = [Depends(api_key_checker(settings.api_key))] if settings.api_key else []
    app.include_router(api.router, dependencies=guards)
    return app
