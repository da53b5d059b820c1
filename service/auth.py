"""API-key check for every endpoint except the health checks, when a key is configured."""
from __future__ import annotations

import hmac
from typing import Callable

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.errors import ApiError

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The key in DEADTREE_API_KEY.")
_bearer = HTTPBearer(auto_error=False, description="The key in DEADTREE_API_KEY, as a bearer token.")


def api_key_checker(expected: str) -> Callable:
    expected_bytes = expected.encode("utf-8")

    def require_api_key(header_key: str | None = Security(_api_key_header),
                        bearer: HTTPAuthorizationCredentials | None = Security(_bearer)) -> None:
        given = header_key or (bearer.credentials if bearer else None)
        # compare_digest: the time taken must not tell how much of a guessed key was right
        if not given or not hmac.compare_digest(given.encode("utf-8", errors="replace"), expected_bytes):
            raise ApiError(401, "unauthorized", "this server needs an API key: send it in the X-API-Key header "
                           "or as 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"})

    return require_api_key
