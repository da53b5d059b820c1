"""The `evaluate` and `validate` commands."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, reported, train_app  # noqa: F401
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

    from deadtree.evaluation.evaluate import evaluate

    with reported("interrupted"):
        report = evaluate(pred, truth, threshold, grid)
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


SCORE_COLUMNS = ("pixel_iou", "object_precision", "object_recall", "object_f1")


def _score_cells(scores) -> list[str]:
    summary = scores.summary()
    return [f"{summary[key]:.3f}" for key in SCORE_COLUMNS]


@app.command("validate")
def validate_command(
    data: Path = typer.Argument(..., show_default=False, help="Annotated frames: a Kaggle-layout folder (RGB_images/, "
                                "NRG_images/, masks/) or an ADA-Net HDF5 patch file."),
    model: str = typer.Option("deadtree-rgbn", "--model", help="Segmenter name (see `deadtree models`) or .onnx file."),
    ensemble: Optional[list[str]] = typer.Option(None, "--ensemble", help="Other segmenters averaged with it, as "
                                                 "`segment --ensemble`."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, int8 or fp16, as `segment --precision`."),
    flips: bool = typer.Option(False, "--flips", help="As `segment --flips`."),
    scales: Optional[str] = typer.Option(None, "--scales", help="As `segment --scales`."),
    min_peak: Optional[float] = typer.Option(None, "--min-peak", help="As `segment --min-peak`."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="As `segment --threshold`."),
    by_county: bool = typer.Option(False, "--by-county", help="Also print each county's scores."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every score to this JSON file."),
) -> None:
    """Score a segmenter as users get it: `segment` on every annotated frame, its polygons against the masks.

    Each frame is written as a 0.6 m GeoTIFF and run through `segment` with the options given (tiling, int8 on a
    CPU, peak filter, polygons), and the polygons are rasterised back and scored as `evaluate` does. Scores are
    kept apart by where each frame's county stood in the model's training split: counties held out for
    validation, counties it never saw, and counties it trained on, whose scores flatter it.
    """
    import json

    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from deadtree.evaluation.frame_validation import ROLE_NOTES, ROLE_TITLES, validate_frames
    from deadtree.pipeline import parse_scales
    from deadtree.runtime.metadata import read_model_info
    from deadtree.runtime.registry import model_names, resolve_model
    from deadtree.training.frames import load_frames

    log_to_stderr(quiet=True)
    with reported("interrupted"):
        info = read_model_info(resolve_model(model, "segmenter"))
        frames = load_frames(data, info.bands)
        if not frames:
            fail(f"{data} holds no annotated frames")
        options = dict(model=model, ensemble=model_names(ensemble or ()), precision=precision, flips=flips,
                       scales=parse_scales(scales), min_peak=min_peak, threshold=threshold)
        with tqdm(total=len(frames), desc=f"validating {info.name}", unit="frame") as bar:
            result = validate_frames(frames, info.bands, set(info.extra.get("validation_groups", ())),
                                     set(info.extra.get("training_groups", ())), options, bar.update)

    rows = [(ROLE_TITLES[role], result.role_frames[role], result.by_role[role])
            for role in ROLE_TITLES if role in result.by_role]
    if "validation" in result.by_role and "unseen" in result.by_role:
        rows.append(("validation and new", result.role_frames["validation"] + result.role_frames["unseen"],
                     result.held_out()))
    if by_county:
        rows += [(f"  {county}", result.county_frames[county], scores)
                 for county, scores in sorted(result.by_county.items())]
    table = Table(title=f"{info.name} {info.version} through `segment` on {data.name}")
    table.add_column("frames from", no_wrap=True)
    for column in ("frames", "pixel IoU", "object precision", "object recall", "object F1"):
        table.add_column(column, justify="right", ratio=1)
    for title, count, scores in rows:
        table.add_row(title, str(count), *_score_cells(scores))
    table.caption = "; ".join(f"{ROLE_TITLES[role]}: {ROLE_NOTES[role]}" for role in ROLE_TITLES
                              if role in result.by_role)
    Console().print(table)
    if json_out:
        report = {"model": info.name, "version": info.version, "data": str(data), "options": {
                      k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()},
                  "by_role": {role: {"frames": result.role_frames[role], **scores.summary()}
                              for role, scores in result.by_role.items()},
                  "by_county": {county: {"frames": result.county_frames[county], **scores.summary()}
                                for county, scores in sorted(result.by_county.items())}}
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
