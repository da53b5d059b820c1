"""The `deadtree` command: a thin layer that parses options and calls the pipeline or the trainers."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.errors import DeadtreeError

app = typer.Typer(
    help="Map standing dead trees in aerial orthophotos: GeoTIFF in, georeferenced polygons out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(help="Train models on your own annotated imagery (needs: pip install 'deadtree\\[train]').",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _log_to_stderr(quiet: bool) -> None:
    import logging

    logger = logging.getLogger("deadtree")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


@app.command()
def segment(
    scene: Path = typer.Argument(..., help="Orthophoto GeoTIFF (RGB or RGB+NIR, any size, any CRS).", show_default=False),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output",
        help="GeoJSON to write (WGS 84 lon/lat, opens in QGIS as is). Default: SCENE_NAME.deadtrees.geojson here."),
    gpkg: Optional[Path] = typer.Option(None, "--gpkg", help="Also write a GeoPackage in the scene's own CRS."),
    probabilities: Optional[Path] = typer.Option(
        None, "--probabilities", help="Also write the dead-tree probability raster (Cloud Optimized GeoTIFF)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Segmenter name (see `deadtree models`) or .onnx file. Default: the shipped model "
        "for the scene's bands (RGB+NIR for 4-band scenes, RGB for 3-band)."),
    translator: Optional[str] = typer.Option(
        None, "--translator", help="Translate the imagery to the look the segmenter was trained on first "
        "(an ADA-Net translator name or .onnx file): for sites unlike the training data."),
    bands: Optional[str] = typer.Option(
        None, "--bands", help="The scene's bands in file order, e.g. R,G,B,NIR or NIR,R,G,B, when the file's "
        "colour tags are missing or wrong."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Probability (0-1) from which a pixel counts as dead tree. Default: the model's "
        "own, tuned on validation data. Lower finds more, with more false alarms."),
    min_area: float = typer.Option(1.0, "--min-area", help="Drop polygons and fill holes smaller than this (m²)."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size", help="Tile size in model pixels (default: the model's)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Overlap between tiles in pixels (default: the model's)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per model call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or tensorrt. auto takes the fastest present."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes, only the summary."),
) -> None:
    """Find standing dead trees in SCENE and write their outlines as polygons.

    Each polygon carries its area (m²), perimeter (m) and the model's mean and highest dead-tree probability
    inside it. Nodata, masked and edge-fill areas never produce polygons.
    """
    from deadtree.bands import parse_band_list
    from deadtree.pipeline import SegmentOptions, segment_scene

    _log_to_stderr(quiet)
    try:
        options = SegmentOptions(
            output=output, gpkg=gpkg, probabilities=probabilities, model=model, translator=translator,
            bands=parse_band_list(bands) if bands else None, threshold=threshold, min_area=min_area,
            tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device, progress=not quiet,
        )
        result = segment_scene(scene, options)
    except DeadtreeError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: no output written")
    written = ", ".join(str(p) for p in result.outputs.values())
    typer.echo(f"{result.summary()} -> {written}")


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
    for column in ("name", "task", "version", "bands", "GSD m", "tile", "val pixel IoU", "val object F1", "default"):
        table.add_column(column)
    for m in shipped:
        val = m.info.extra.get("validation") or {}
        table.add_row(
            m.info.name, m.info.task, m.info.version, ",".join(m.info.bands), f"{m.info.gsd_m:g}",
            str(m.info.tile_size), _fmt(val.get("pixel_iou")), _fmt(val.get("object_f1")),
            "yes" if m.info.extra.get("default") else "",
        )
    Console().print(table)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


@train_app.command("segmenter")
def train_segmenter_command(
    data: Path = typer.Argument(..., help="Kaggle-layout folder (RGB_images/, NRG_images/, masks/) or ADA-Net .h5 file."),
    out_dir: Path = typer.Option(Path("runs/segmenter"), "--out-dir", help="Where checkpoints, curves and the split go."),
    bands: str = typer.Option("R,G,B,NIR", help="Bands to train on, in model input order: R,G,B,NIR or R,G,B."),
    arch: str = typer.Option("unet-r18-d4", help="Network: unet-r18, unet-r18-lite, unet-r18-d4, unet-r34-d4, unet-effb0, unet-mnv2."),
    steps: int = typer.Option(3000, help="Optimiser steps in the whole schedule (a resumed run continues it)."),
    batch_size: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(256, help="Crop size in pixels."),
    lr: float = typer.Option(2e-3, help="Peak learning rate of the one-cycle schedule."),
    val_every: int = typer.Option(200, help="Validate and checkpoint every N steps."),
    val_fraction: float = typer.Option(0.2, help="Share of each state's frames held out, by whole counties."),
    threads: int = typer.Option(0, help="CPU threads for torch (0 = torch's default)."),
    max_minutes: float = typer.Option(0.0, help="Stop resumably after this many minutes (0 = run to the end)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/last.pt."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Train a dead-tree segmenter from scratch, validating on counties it never sees."""
    from deadtree.bands import parse_band_list
    from deadtree.training.segmenter_trainer import SegmenterConfig, train_segmenter

    try:
        config = SegmenterConfig(
            data=str(data), out_dir=str(out_dir), bands=parse_band_list(bands), arch=arch, crop=crop,
            batch_size=batch_size, steps=steps, lr=lr, val_every=val_every, val_fraction=val_fraction,
            threads=threads, max_minutes=max_minutes, seed=seed,
        )
        summary = train_segmenter(config, resume=resume)
    except DeadtreeError as exc:
        fail(str(exc))
    best = summary["best"] or {}
    typer.echo(
        f"{'finished' if summary['finished'] else 'paused (resume with --resume)'} at step {summary['step']}: "
        f"best validation IoU {best.get('pixel_iou', float('nan')):.3f}, object F1 {best.get('object_f1', float('nan')):.3f}"
    )


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A segmenter checkpoint (best.pt) written by `deadtree train segmenter`."),
    name: str = typer.Option(..., "--name", help="Model name users pass to --model."),
    version: str = typer.Option("1.0.0", "--version", help="Model version recorded in the file and the outputs."),
    out_dir: Path = typer.Option(Path("models"), "--out-dir", help="Folder for NAME.onnx and its card NAME.md."),
    tile: int = typer.Option(256, "--tile", help="Tile size the pipeline uses with this model."),
    overlap: int = typer.Option(64, "--overlap", help="Tile overlap the pipeline uses with this model."),
    default: bool = typer.Option(False, "--default", help="Make it the default for scenes with its bands."),
    description: str = typer.Option("", "--description", help="One paragraph for the model card."),
) -> None:
    """Export a trained segmenter to ONNX with its metadata and write its model card."""
    import shlex
    import sys

    import torch

    from deadtree.training.export import export_segmenter_checkpoint
    from deadtree.training.model_card import write_segmenter_card

    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    info, difference = export_segmenter_checkpoint(checkpoint, onnx_path, name, version, tile, overlap,
                                                   default=default, description=description)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    split = ckpt.get("split") or __import__("json").loads((checkpoint.parent / "split.json").read_text())
    command = "deadtree " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_segmenter_card(onnx_path.with_suffix(".md"), info, ckpt, split, command, difference,
                         onnx_path.stat().st_size)
    typer.echo(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, parity {difference:.1e}) and its card")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="DEADTREE_HOST",
                             help="Address to listen on; 0.0.0.0 for every interface (set an API key then)."),
    port: int = typer.Option(8000, "--port", envvar="DEADTREE_PORT", help="Port to listen on."),
) -> None:
    """Run the REST service (needs: pip install 'deadtree\\[service]'). Other settings come from DEADTREE_*
    environment variables: see docs/service.md."""
    try:
        from service.server import serve as run_server
    except ImportError as exc:
        fail(f"the service needs its extra: pip install 'deadtree[service]' ({exc})")
    try:
        run_server(host, port)
    except DeadtreeError as exc:
        fail(str(exc))
