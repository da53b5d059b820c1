"""One JSON shape for every error the service answers, and the mapping from deadtree's own errors to HTTP.

Every error body is {"status": 422, "code": "invalid_scene", "detail": "<one line for a person>"}.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deadtree.errors import DeadtreeError, InputError, ModelError

log = logging.getLogger("deadtree.service")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def from_deadtree(exc: DeadtreeError) -> ApiError:
    """Scene and model problems are the client's to fix: 422 with deadtree's own message."""
    code = "invalid_model" if isinstance(exc, ModelError) else "invalid_scene" if isinstance(exc, InputError) \
        else "invalid_request"
    return ApiError(422, code, str(exc))


def error_body(status: int, code: str, detail: str) -> dict:
    return {"status": status, "code": code, "detail": detail}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.code, error.detail), status_code=error.status,
                        headers=error.headers)


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(DeadtreeError)
    async def _deadtree_error(request: Request, exc: DeadtreeError):
        return error_response(from_deadtree(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors()[:3]:
            where = ".".join(str(part) for part in err.get("loc", ()) if part not in ("path", "query", "body"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return error_response(ApiError(422, "invalid_request", "; ".join(problems) or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(ApiError(exc.status_code, code, detail, dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A bug, not bad input: log the trace for us, give the client one line and no internals.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal_error", "the server hit an unexpected error; it is logged"))
