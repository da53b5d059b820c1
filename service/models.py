"""The shipped models as the API shows them, and name lookups restricted to them.

A client names a model; it never gives a file. deadtree's own resolver also accepts .onnx paths (right for the
CLI, whose user owns the machine), so the service looks names up among the shipped models itself.
"""
from __future__ import annotations

from deadtree.errors import ModelError
from deadtree.runtime.registry import ShippedModel, list_models

MAX_CARD_CHARS = 200_000


def shipped(task: str | None = None) -> list[ShippedModel]:
    return [m for m in list_models() if task is None or m.info.task == task]


def find_shipped(name: str, task: str) -> ShippedModel:
    candidates = shipped(task)
    for model in candidates:
        if model.info.name == name:
            return model
    names = ", ".join(sorted(m.info.name for m in candidates)) or "none installed"
    raise ModelError(f"unknown {task} {name[:100]!r}; shipped {task}s: {names} (GET /v1/models lists them)")


def describe(model: ShippedModel) -> dict:
    info = model.info
    return {
        "name": info.name,
        "version": info.version,
        "task": info.task,
        "bands": list(info.bands),
        "gsd_m": info.gsd_m,
        "tile_size": info.tile_size,
        "overlap": info.overlap,
        "threshold": info.threshold,
        "min_peak": info.min_peak,
        "description": info.description,
        "default": bool(info.extra.get("default", False)),
        "validation": info.extra.get("validation") or None,
        "card": _card_text(model),
    }


def _card_text(model: ShippedModel) -> str | None:
    try:
        return model.card.read_text(encoding="utf-8", errors="replace")[:MAX_CARD_CHARS]
    except OSError:
        return None
