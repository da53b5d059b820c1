"""Runs the service under uvicorn: what `deadtree serve` calls."""
from __future__ import annotations

import logging
import os

from deadtree.errors import InputError

from service.settings import Settings

GRACEFUL_SHUTDOWN_S = 10
MAX_CONNECTIONS = 256  # beyond this uvicorn answers 503 itself instead of piling up sockets


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    import uvicorn

    from service.app import create_app

    settings = settings or Settings.from_env()
    _check_data_dir(settings)
    _log_to_stderr()
    if not settings.api_key and not _loopback(host):
        logging.getLogger("deadtree").warning(
            "NO API KEY: anyone who can reach %s:%d can upload scenes and read every job; set DEADTREE_API_KEY "
            "(and put a reverse proxy in front, docs/service.md)", host, port)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limit_concurrency=MAX_CONNECTIONS)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_data_dir(settings: Settings) -> None:
    """Fail with one line now rather than with a traceback from inside the server's start-up."""
    try:
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot use the data folder {settings.data_dir} (DEADTREE_DATA_DIR): "
                         f"{exc.strerror or exc}") from None
    if not os.access(settings.data_dir, os.W_OK | os.X_OK):
        raise InputError(f"the data folder {settings.data_dir} (DEADTREE_DATA_DIR) is not writable")


def _log_to_stderr() -> None:
    logger = logging.getLogger("deadtree")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
