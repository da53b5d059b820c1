"""The `evaluate` command."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401

@app.command("evaluate")
def evaluate_command(
    pred: Path = typer.Argument(..., show_default=False, help="Predictions: polygons (GeoJSON, GeoPackage, ...), a "
                                "mask or probability raster, or a folder of PNG masks named like the truth masks."),
    truth: Path = typer.Argument(..., show_default=False, help="Ground truth: polygons, a mask raster (nonzero = "
                                 "dead tree, nodata left out) or a Kaggle-layout folder (masks/mask_<id>.png)."),
    threshold: float = typer.Option(0.5, "--threshold", help="A predicted raster pixel is dead when its value, after "
                                    "the file's scale (deadtree's --probabilities read 0-1), is at least this. "
                                    "0/1 and 0/255 masks read right with any value in (0, 1]."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Raster whose pixels are compared when PRED and TRUTH "
                                        "are both polygons (e.g. the scene)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores to this JSON file."),
) -> None:
    """Score predicted dead trees against ground truth, pixel by pixel and tree by tree.

    Polygons are rasterised onto the truth raster's grid (or the predicted raster's, or --grid): a pixel counts
    when its centre is inside, after reprojection if the CRS differs (GeoJSON is lon/lat). Pixel IoU, precision,
    recall and F1 pool all pixels (and all images of a folder).

    Objects are 8-connected groups of dead pixels. A true object counts as found when a predicted object
    overlaps it with IoU >= 0.25; matches are one to one, taken greedily from the highest IoU down. Object
    precision = matched / predicted objects, recall = matched / true objects. See docs/evaluate.md.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from deadtree.evaluate import evaluate

    try:
        report = evaluate(pred, truth, threshold, grid)
    except DeadtreeError as exc:
        fail(str(exc))
    table = Table(title=f"{pred.name} against {truth.name}")
    for column in ("", "IoU", "precision", "recall", "F1"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("pixels", *(f"{report[f'pixel_{k}']:.3f}" for k in ("iou", "precision", "recall", "f1")))
    table.add_row("objects", "-", *(f"{report[f'object_{k}']:.3f}" for k in ("precision", "recall", "f1")))
    table.caption = (f"objects: {report['count_truth']} true, {report['count_predicted']} predicted, "
                     f"{report['count_matched']} matched" + (f"; {report['images']} images" if report["images"] > 1 else ""))
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


