"""Service settings, read once from DEADTREE_* environment variables (docs/service.md has the table)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from deadtree.errors import DeadtreeError, InputError

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
        for suffix, (field_name, parse) in ENV_SETTINGS.items():
            variable = f"DEADTREE_{suffix.upper()}"
            raw = env.get(variable, "").strip()
            if not raw and variable == "DEADTREE_API_KEY" and variable in env:
                # an empty key from a template (compose's ${DEADTREE_API_KEY:-}) must not open the API silently
                raise InputError("DEADTREE_API_KEY is set but blank: give a key, or unset the variable to run "
                                 "an open API (on loopback only)")
            if not raw:
                continue
            try:
                values[field_name] = parse(raw)
            except ValueError:
                raise InputError(f"{variable}={raw!r} is not a valid {parse.__doc__}") from None
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
        self._check_device()

    def _check_device(self) -> None:
        """A device this ONNX Runtime cannot give would fail every job: refuse to start instead."""
        import onnxruntime

        from deadtree.runtime.session import choose_providers

        try:
            choose_providers(self.device, onnxruntime.get_available_providers())
        except DeadtreeError as exc:
            raise InputError(f"DEADTREE_DEVICE: {exc}") from None


def _text(text: str) -> str:
    """text"""
    return text


def _integer(text: str) -> int:
    """whole number"""
    return int(text)


def _number(text: str) -> float:
    """number"""
    return float(text)


def _mebibytes(text: str) -> int:
    """size in MiB"""  # sizes are given in MiB, which is how people think of uploads
    return int(float(text) * MB)


def _origins(text: str) -> tuple[str, ...]:
    """comma-separated list"""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _path(text: str) -> Path:
    """path"""
    return Path(text).expanduser()


# DEADTREE_<suffix> -> (Settings field, parser whose docstring names what it expects)
ENV_SETTINGS = {
    "data_dir": ("data_dir", _path),
    "api_key": ("api_key", _text),
    "cors_origins": ("cors_origins", _origins),
    "workers": ("workers", _integer),
    "queue_limit": ("queue_limit", _integer),
    "retry_after": ("retry_after_s", _integer),
    "max_upload_mb": ("max_upload_bytes", _mebibytes),
    "sync_max_upload_mb": ("sync_max_upload_bytes", _mebibytes),
    "max_pixels": ("max_pixels", _number),
    "sync_max_pixels": ("sync_max_pixels", _number),
    "result_ttl": ("result_ttl_s", _number),
    "cleanup_interval": ("cleanup_interval_s", _number),
    "max_attempts": ("max_attempts", _integer),
    "device": ("device", _text),
}
assert {f for f, _ in ENV_SETTINGS.values()} == {f.name for f in fields(Settings)}, "every setting has a variable"
