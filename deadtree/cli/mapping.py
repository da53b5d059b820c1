"""Commands that map dead trees: `segment` and `segment-many`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, reported, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401

PRECISION_HELP = ("auto, fp32, int8 or fp16. auto runs the model's shipped int8 variant on a CPU and its fp16 "
                  "variant on a GPU (each checked against fp32 on the validation split), else fp32.")
FLIPS_HELP = ("Average the model over each tile and its two mirror images: 3x the model time for little "
              "(deadtree-rgbn 0.6.0 run by `segment` on each validation frame: object F1 0.617 -> 0.620, pixel IoU "
              "0.412 -> 0.411; with --ensemble deadtree-rgbn-effb0, 0.630 -> 0.634).")

SCALES_HELP = ("Also run the model on each tile magnified by these factors (comma-separated, e.g. 1.5) and "
               "average: small crowns drawn larger. 1.5 adds 2.25x the model time (deadtree-rgbn 0.6.0 run by "
               "`segment` on each validation frame: object F1 0.617 -> 0.626, pixel IoU 0.412 -> 0.403).")

ENSEMBLE_HELP = ("Other segmenters (names or .onnx, comma-separated or the option repeated) whose probabilities are "
                 "averaged with the main model's. Costs the model time once more per model. Run by `segment` on "
                 "each validation frame (peak filter on), deadtree-rgbn 0.6.0 alone: pixel IoU 0.412, object F1 "
                 "0.617; --ensemble deadtree-rgbn-effb0: 0.418 / 0.630 (with --flips 0.421 / 0.634); "
                 "--ensemble deadtree-rgb,deadtree-rgbn-effb0: 0.416 / 0.619.")
BANDS_HELP = ("The scene's bands in file order when the file's colour tags are missing or wrong, e.g. R,G,B,NIR or "
              "NIR,R,G,B; '-' for a band no model reads, e.g. B,G,R,-,NIR for a five-band multispectral mosaic, "
              "and alpha for a transparency mask, e.g. R,G,B,alpha.")
MIN_PEAK_HELP = ("Keep a polygon only where its highest dead-tree probability reaches this (0-1; 0 keeps all). "
                 "Faint patches are mostly false alarms. Default: the model's own, tuned for object F1 on "
                 "validation (deadtree-rgbn 0.6.0: 0.90; run by `segment` on each validation frame, object F1 "
                 "0.581 -> 0.617 at pixel IoU 0.411 -> 0.412).")


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
    ensemble: Optional[list[str]] = typer.Option(None, "--ensemble", help=ENSEMBLE_HELP),
    translator: Optional[str] = typer.Option(
        None, "--translator", help="Translate the imagery to the look the segmenter was trained on first "
        "(an ADA-Net translator name or .onnx file): for sites unlike the training data."),
    bands: Optional[str] = typer.Option(
        None, "--bands", help=BANDS_HELP),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Probability (0-1) from which a pixel counts as dead tree. Default: the model's "
        "own, tuned on validation data. Lower finds more, with more false alarms."),
    min_area: float = typer.Option(1.0, "--min-area", help="Drop polygons and fill holes smaller than this (m²)."),
    min_peak: Optional[float] = typer.Option(None, "--min-peak", help=MIN_PEAK_HELP),
    tile_size: Optional[int] = typer.Option(None, "--tile-size", help="Tile size in model pixels (default: the model's)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Overlap between tiles in pixels (default: the model's)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Tiles per model call (default: as many as fit 8 tiles of 256 px)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or tensorrt. auto takes the fastest present."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    flips: bool = typer.Option(False, "--flips", help=FLIPS_HELP),
    scales: Optional[str] = typer.Option(None, "--scales", help=SCALES_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes, only the summary."),
) -> None:
    """Find standing dead trees in SCENE and write their outlines as polygons.

    Each polygon carries its area (m²), perimeter (m) and the model's mean and highest dead-tree probability
    inside it. Nodata, masked and edge-fill areas never produce polygons.
    """
    from deadtree.bands import parse_band_list
    from deadtree.pipeline import SegmentOptions, parse_scales, segment_scene
    from deadtree.runtime.registry import model_names

    log_to_stderr(quiet)
    with reported("interrupted: no output written"):
        options = SegmentOptions(
            output=output, gpkg=gpkg, probabilities=probabilities, model=model, ensemble=model_names(ensemble or ()),
            translator=translator,
            bands=parse_band_list(bands, for_scene=True) if bands else None, threshold=threshold, min_area=min_area,
            min_peak=min_peak, tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device, precision=precision,
            flips=flips, scales=parse_scales(scales), progress=not quiet, qml=qml, preview=preview,
            preview_bands=preview_bands,
        )
        result = segment_scene(scene, options)
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
    min_peak: Optional[float] = typer.Option(None, "--min-peak", help=MIN_PEAK_HELP),
    bands: Optional[str] = typer.Option(None, "--bands", help=BANDS_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    flips: bool = typer.Option(False, "--flips", help=FLIPS_HELP),
    scales: Optional[str] = typer.Option(None, "--scales", help=SCALES_HELP),
    ensemble: Optional[list[str]] = typer.Option(None, "--ensemble", help=ENSEMBLE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, only failures and the summary."),
) -> None:
    """Segment many scenes in parallel, resumably, and merge all their polygons into one file.

    Scenes already done in OUT_DIR with the same options are skipped, so an interrupted run picks up where it stopped.
    A scene that fails is reported on one line and the others go on; the exit code is then 1.
    """
    from deadtree.bands import parse_band_list
    from deadtree.batch import BatchOptions, find_scenes, run_batch
    from deadtree.pipeline import check_scales, parse_scales
    from deadtree.runtime.registry import model_names

    with reported("interrupted: scenes finished so far are kept and will be skipped next time"):
        options = BatchOptions(out_dir=out_dir, scheduler=scheduler, workers=workers, merged=merged, model=model,
                               threshold=threshold, min_area=min_area, min_peak=min_peak,
                               bands=parse_band_list(bands, for_scene=True) if bands else None, precision=precision,
                               flips=flips, scales=parse_scales(scales), ensemble=model_names(ensemble or ()),
                               progress=not quiet)
        check_scales(options.scales)
        result = run_batch(find_scenes(scenes), options)
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(code=1)


