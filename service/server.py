"""Runs the service under uvicorn: what `deadtree serve` calls."""
from __future__ import annotations

import logging

from service.settings import Settings

GRACEFUL_SHUTDOWN_S = 10
MAX_CONNECTIONS = 256  # beyond this uvicorn answers 503 itself instead of piling up sockets


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    import uvicorn

    from service.app import create_app

    settings = settings or Settings.from_env()
    _log_to_stderr()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limit_concurrency=MAX_CONNECTIONS)


def _log_to_stderr() -> None:
    logger = logging.getLogger("deadtree")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
