"""The `models` command."""
from __future__ import annotations

from deadtree.cli.apps import app, fail, log_to_stderr, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401


@app.command("models")
def models_command() -> None:
    """List the shipped models with the key figures from their cards."""
    from rich.console import Console
    from rich.table import Table

    from deadtree.runtime.registry import list_models, model_dirs

    shipped = list_models()
    if not shipped:
        fail(f"no models found in {', '.join(str(d) for d in model_dirs()) or 'any model folder'}")
    table = Table(title="deadtree models")
    table.add_column("name", no_wrap=True)  # names and bands are what users type: never cut them
    table.add_column("task")
    table.add_column("version")
    table.add_column("bands", no_wrap=True)
    for column in ("GSD m", "tile", "val IoU", "val obj F1", "default"):
        table.add_column(column)
    for m in shipped:
        val = m.info.extra.get("validation") or {}
        table.add_row(
            m.info.name, m.info.task, m.info.version, ",".join(m.info.bands), f"{m.info.gsd_m:g}",
            str(m.info.tile_size), _fmt(val.get("pixel_iou")),
            # object F1 as `segment` delivers it by default: with the model's peak filter
            _fmt(val.get("peak_object_f1", val.get("object_f1"))),
            "yes" if m.info.extra.get("default") else "",
        )
    Console().print(table)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


