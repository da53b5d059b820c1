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
    qml: bool = typer.Option(
        False, "--qml", help="Also write the QGIS style beside the GeoJSON (same name, .qml), so QGIS shows the "
        "outlines coloured yellow to red by score_mean. The GeoPackage always carries this style."),
    preview: Optional[Path] = typer.Option(
        None, "--preview", help="Also write a quicklook PNG of the scene (longest side 1600 px) with the polygons "
        "outlined in yellow."),
    preview_bands: str = typer.Option(
        "rgb", "--preview-bands", help="Colours of the --preview: rgb (true colour) or nir (NIR,R,G false colour)."),
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
            qml=qml, preview=preview, preview_bands=preview_bands,
        )
        result = segment_scene(scene, options)
    except DeadtreeError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: no output written")
    written = ", ".join(str(p) for p in result.outputs.values())
    typer.echo(f"{result.summary()} -> {written}")


@app.command("segment-many")
def segment_many(
    scenes: list[str] = typer.Argument(..., show_default=False, help="GeoTIFFs: quoted patterns such as "
                                       "'tiles/*.tif' or 'survey/**/*.tif', files, or folders."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for SCENE.geojson and SCENE.gpkg of each scene."),
    merged: Optional[Path] = typer.Option(
        None, "--merged", help="All polygons in one file with a `scene` column: .gpkg or .parquet (GeoParquet). "
        "In the scenes' shared CRS, or lon/lat when they differ. Default: OUT_DIR/merged.gpkg."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786. Its workers "
        "must see the scenes and OUT_DIR under the same paths. Default: a local cluster on this machine."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Scenes at a time on the local cluster "
                                          "(default: one per CPU core)."),
    model: Optional[str] = typer.Option(None, "--model", help="Segmenter name or .onnx file (as for `segment`)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Probability (0-1) from which a pixel "
                                              "counts as dead tree. Default: the model's own."),
    min_area: float = typer.Option(1.0, "--min-area", help="Drop polygons and fill holes smaller than this (m²)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="The scenes' bands in file order, e.g. R,G,B,NIR."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, only failures and the summary."),
) -> None:
    """Segment many scenes in parallel, resumably, and merge all their polygons into one file.

    Scenes already done in OUT_DIR with the same options are skipped, so an interrupted run picks up where it stopped.
    A scene that fails is reported on one line and the others go on; the exit code is then 1.
    """
    from deadtree.bands import parse_band_list
    from deadtree.batch import BatchOptions, find_scenes, run_batch

    try:
        options = BatchOptions(out_dir=out_dir, scheduler=scheduler, workers=workers, merged=merged, model=model,
                               threshold=threshold, min_area=min_area,
                               bands=parse_band_list(bands) if bands else None, progress=not quiet)
        result = run_batch(find_scenes(scenes), options)
    except DeadtreeError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: scenes finished so far are kept and will be skipped next time")
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(code=1)


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


@train_app.command("translator")
def train_translator_command(
    source: Path = typer.Option(..., "--source", help="Imagery to translate FROM (no masks needed): Kaggle-layout "
                                "folder, ADA-Net .h5 file, GeoTIFF or folder of GeoTIFFs.", show_default=False),
    target: Path = typer.Option(..., "--target", help="Imagery whose look to translate TO (where the segmenter "
                                "was trained); same kinds of input.", show_default=False),
    out_dir: Path = typer.Option(Path("runs/translator"), "--out-dir", help="Checkpoints, sample grids, curves."),
    bands: str = typer.Option("R,G,B,NIR", "--bands", help="Translator bands in model order."),
    config: str = typer.Option("cpu", "--config", help="Preset: cpu (small, for CPU) or paper (the paper's, GPU)."),
    source_filter: Optional[str] = typer.Option(None, "--source-filter", help="Keep source names starting with "
                                                "these prefixes, e.g. WA,OR,NM (states) or mo109 (a county)."),
    target_filter: Optional[str] = typer.Option(None, "--target-filter", help="Same for the target, e.g. AR,MO,TX."),
    width: Optional[int] = typer.Option(None, "--width", help="Generator width (paper: 64). Default: the preset's."),
    patch: Optional[int] = typer.Option(None, "--patch", help="Patch side in pixels, a power of two."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Patches per domain per step."),
    attention: Optional[bool] = typer.Option(None, "--attention/--no-attention",
                                             help="Attention blocks (off = plain CUT generator, the ablation)."),
    freq_nce: Optional[bool] = typer.Option(None, "--freq-nce/--no-freq-nce", help="Frequency-domain NCE term."),
    tiled_discriminator: Optional[int] = typer.Option(
        None, "--tiled-discriminator", help="Score random crops of this side instead of whole patches (0 = whole)."),
    disc_channels: Optional[int] = typer.Option(None, "--disc-channels", help="Discriminator base channels."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs in the whole schedule."),
    decay_epochs: Optional[int] = typer.Option(None, "--decay-epochs",
                                               help="Final epochs over which the learning rate falls to 0."),
    steps_per_epoch: Optional[int] = typer.Option(
        None, "--steps-per-epoch", help="Steps per epoch (0 = one pass over the source at stride patch/2)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate (betas 0.5, 0.999)."),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="Ground resolution GeoTIFF inputs are read at (m)."),
    max_minutes: float = typer.Option(0.0, "--max-minutes", help="Stop resumably after this many minutes."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0 = torch's default)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/last.pt (same options)."),
) -> None:
    """Train an ADA-Net translator that makes SOURCE imagery look like TARGET imagery (unpaired, no masks)."""
    from deadtree.bands import parse_band_list
    from deadtree.training.translator_data import parse_prefixes
    from deadtree.training.translator_trainer import config_from_preset, train_translator

    try:
        settings = config_from_preset(
            config, source=str(source), target=str(target), out_dir=str(out_dir), bands=parse_band_list(bands),
            source_filter=parse_prefixes(source_filter), target_filter=parse_prefixes(target_filter), width=width,
            patch=patch, batch_size=batch_size, attention=attention, freq_nce=freq_nce,
            tiled_discriminator=tiled_discriminator, disc_channels=disc_channels, epochs=epochs,
            decay_epochs=decay_epochs, steps_per_epoch=steps_per_epoch, lr=lr, gsd_m=gsd, max_minutes=max_minutes,
            threads=threads, device=device, seed=seed,
        )
        summary = train_translator(settings, resume=resume)
    except DeadtreeError as exc:
        fail(str(exc))
    typer.echo(f"{'finished' if summary['finished'] else 'paused (resume with --resume)'} at step "
               f"{summary['step']} of {summary['total_steps']} (epoch {summary['epoch']}): {out_dir}/last.pt")


@app.command("export-translator")
def export_translator_command(
    checkpoint: Path = typer.Argument(..., help="A translator checkpoint (last.pt) from `deadtree train translator`."),
    name: str = typer.Option(..., "--name", help="Translator name users pass to --translator."),
    version: str = typer.Option("1.0.0", "--version", help="Version recorded in the file and the outputs."),
    out_dir: Path = typer.Option(Path("models"), "--out-dir", help="Folder for NAME.onnx and its card NAME.md."),
    tile: int = typer.Option(256, "--tile", help="The one tile size the pipeline will run it on (multiple of 4)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Tile overlap (default: a quarter of the tile)."),
    gsd: float = typer.Option(0.6, "--gsd", help="Ground resolution it was trained at (m)."),
    description: str = typer.Option("", "--description", help="One paragraph for the model card."),
) -> None:
    """Export a trained translator's generator to ONNX with its metadata and write its model card."""
    import shlex

    from deadtree.training.translator_export import export_translator_checkpoint, write_translator_card

    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    try:
        info, difference, ckpt = export_translator_checkpoint(checkpoint, onnx_path, name, version, tile, overlap,
                                                              gsd, description)
    except DeadtreeError as exc:
        fail(str(exc))
    command = " ".join(shlex.quote(str(a)) for a in (
        "deadtree", "export-translator", checkpoint, "--name", name, "--version", version, "--out-dir", out_dir,
        "--tile", tile, "--overlap", info.overlap, "--gsd", gsd))
    write_translator_card(onnx_path.with_suffix(".md"), info, ckpt, command, difference, onnx_path.stat().st_size)
    typer.echo(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, parity {difference:.1e}) and its card")


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


@app.command("export-variants")
def export_variants_command(
    model: Path = typer.Argument(..., help="A shipped fp32 segmenter (.onnx) exported by `deadtree export`."),
    data: Path = typer.Option(..., "--data", help="The Kaggle-layout folder it was trained on (calibration and checks)."),
    out_dir: Path = typer.Option(Path("models"), "--out-dir", help="Where NAME-int8.onnx / NAME-fp16.onnx go."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Statically quantized int8 for CPUs."),
    fp16: bool = typer.Option(True, "--fp16/--no-fp16", help="Half precision for GPUs."),
    frames: int = typer.Option(0, "--frames", help="Use at most this many validation frames for the checks (0 = all)."),
) -> None:
    """Write int8 (CPU) and fp16 (GPU) variants of a segmenter, checked against it on validation frames.

    int8 is calibrated on training frames only and kept only if its masks match fp32 at IoU >= 0.98 and its
    validation pixel IoU and object F1 stay within 0.01 of fp32's; fp16 only if its probabilities stay
    within 0.01 of fp32's and its masks match at IoU >= 0.99.
    """
    import json

    from deadtree.runtime.metadata import read_model_info
    from deadtree.training.frames import load_frames
    from deadtree.training.variants import compare_on_frames, fp16_model, int8_model, write_variant

    try:
        info = read_model_info(model)
        all_frames = load_frames(data, info.bands)
    except DeadtreeError as exc:
        fail(str(exc))
    val_groups = set(info.extra.get("validation_groups", []))
    if not val_groups:
        fail(f"{model.name} records no validation split: export it again with `deadtree export`")
    train = [f for f in all_frames if f.group not in val_groups]
    val = [f for f in all_frames if f.group in val_groups][: frames or None]
    if int8:
        variant = int8_model(model, train, info.tile_size)
        checks = compare_on_frames(model, variant, val, info.threshold)
        typer.echo("int8: " + json.dumps({k: round(v, 4) for k, v in checks.items()}))
        ok = (checks["mask_iou_vs_fp32"] >= 0.98
              and abs(checks["variant_pixel_iou"] - checks["fp32_pixel_iou"]) <= 0.01
              and abs(checks["variant_object_f1"] - checks["fp32_object_f1"]) <= 0.01)
        if ok:
            typer.echo(f"wrote {write_variant(model, 'int8', out_dir, variant, checks)}")
        else:
            typer.secho("int8 variant rejected: it does not match fp32 closely enough", fg=typer.colors.YELLOW, err=True)
    if fp16:
        variant = fp16_model(model)
        checks = compare_on_frames(model, variant, val, info.threshold)
        checks["checked_on"] = "ONNX Runtime CPU provider"
        typer.echo("fp16: " + json.dumps({k: v if isinstance(v, str) else round(v, 4) for k, v in checks.items()}))
        if checks["max_probability_difference"] <= 1e-2 and checks["mask_iou_vs_fp32"] >= 0.99:
            typer.echo(f"wrote {write_variant(model, 'fp16', out_dir, variant, checks)}")
        else:
            typer.secho("fp16 variant rejected: it does not match fp32 closely enough", fg=typer.colors.YELLOW, err=True)


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
