"""Service settings, read once from DEADTREE_* environment variables (docs/service.md has the table)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from deadtree.errors import InputError

MB = 1024 * 1024


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "deadtree" / "service"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    api_key: str | None = None  # None: the API is open (fine on loopback, not on a network)
    cors_origins: tuple[str, ...] = ()
    workers: int = 1  # scenes segmented at once; each uses all cores ONNX Runtime gives it
    queue_limit: int = 16  # queued (not yet running) jobs; beyond it new work gets 503 + Retry-After
    retry_after_s: int = 30
    max_upload_bytes: int = 4096 * MB
    sync_max_upload_bytes: int = 64 * MB  # POST /v1/segment answers in the same request: keep it small
    max_pixels: float = 2e9  # header limit, checked before any pixel is decoded (decompression bombs)
    sync_max_pixels: float = 25e6  # about 5000 x 5000 px
    result_ttl_s: float = 24 * 3600
    cleanup_interval_s: float = 60.0
    max_attempts: int = 3  # a job that was running when the server died this often is failed, not retried
    device: str = "auto"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, (parse, scale) in _ENV.items():
            raw = env.get(f"DEADTREE_{name.upper()}")
            if raw is None or raw.strip() == "":
                continue
            key = _FIELD_FOR_ENV.get(name, name)
            try:
                value = parse(raw.strip())
                values[key] = int(value * scale) if scale != 1 else value
            except ValueError:
                raise InputError(f"DEADTREE_{name.upper()}={raw!r} is not a valid {parse.__name__}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        positive = ("workers", "queue_limit", "max_upload_bytes", "sync_max_upload_bytes", "max_pixels",
                    "sync_max_pixels", "result_ttl_s", "cleanup_interval_s", "max_attempts")
        for name in positive:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise InputError(f"setting {name} must be a positive number, not {value!r}")
        if self.retry_after_s < 0:
            raise InputError("setting retry_after_s cannot be negative")


def _origins(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _text(text: str) -> str:
    return text


_origins.__name__ = "comma-separated list"
_text.__name__ = "text"

# environment suffix -> (parser, multiplier); sizes are given in MiB, which is how people think of uploads
_ENV = {
    "data_dir": (Path, 1),
    "api_key": (_text, 1),
    "cors_origins": (_origins, 1),
    "workers": (int, 1),
    "queue_limit": (int, 1),
    "retry_after": (int, 1),
    "max_upload_mb": (float, MB),
    "sync_max_upload_mb": (float, MB),
    "max_pixels": (float, 1),
    "sync_max_pixels": (float, 1),
    "result_ttl": (float, 1),
    "cleanup_interval": (float, 1),
    "max_attempts": (int, 1),
    "device": (_text, 1),
}
_FIELD_FOR_ENV = {
    "retry_after": "retry_after_s",
    "max_upload_mb": "max_upload_bytes",
    "sync_max_upload_mb": "sync_max_upload_bytes",
    "result_ttl": "result_ttl_s",
    "cleanup_interval": "cleanup_interval_s",
}
assert set(_FIELD_FOR_ENV.get(k, k) for k in _ENV) == {f.name for f in fields(Settings)}
