"""The `models` command."""
from __future__ import annotations

from deadtree.cli.apps import app, fail, log_to_stderr, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401


@app.command("models")
def models_command() -> None:
    """List the shipped models with the key figures from their cards."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from deadtree.runtime.registry import list_models, model_dirs

    shipped = list_models()
    if not shipped:
        fail(f"no models found in {', '.join(str(d) for d in model_dirs()) or 'any model folder'}")
    # Narrow enough for an 80-column terminal, where the framed nine-column table cut the scores to "0.…";
    # one space between columns leaves room for names as long as deadtree-rgbn-effb0-fp16.
    table = Table(title="deadtree models", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="IoU, obj F1: validation split (obj F1 with the peak filter, as segment writes polygons). "
                          "FA: dead-tree polygons per km² that segment draws on a town kept out of training. "
                          "Training data, split, tile size, threshold and floor: each model's card, models/NAME.md.")
    table.add_column("name", no_wrap=True)  # names and bands are what users type: never cut them
    table.add_column("version", no_wrap=True)
    table.add_column("bands", no_wrap=True)
    table.add_column("IoU", no_wrap=True, justify="right")
    table.add_column("obj F1", no_wrap=True, justify="right")
    table.add_column("FA", no_wrap=True, justify="right")
    table.add_column("role", no_wrap=True)
    for m in shipped:
        val = m.info.extra.get("validation") or {}
        role = m.info.task if m.info.task != "segmenter" else ("default" if m.info.extra.get("default") else "")
        table.add_row(
            m.info.name, m.info.version, ",".join(m.info.bands), _fmt(val.get("pixel_iou")),
            _fmt(val.get("peak_object_f1", val.get("object_f1"))),
            _fmt((m.info.extra.get("false_alarms") or {}).get("polygons_per_km2"), 1), role,
        )
    Console().print(table)


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


