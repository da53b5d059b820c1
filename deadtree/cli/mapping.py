"""Commands that map dead trees: `segment` and `segment-many`. Their segment options come from
deadtree.options (declared there once); the parameters here are each command's own."""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, reported, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401


def takes_segment_options(door: str):
    """Give a command the typer parameters of every segment option its door takes, after its own; the command
    receives them as `options` (the parsed values, by field name)."""
    from deadtree.options import cli_parameters, door_fields

    names = [f.name for f in door_fields(door)]

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]
        own_names = {p.name for p in own}

        @functools.wraps(command)
        def with_options(**values):
            options = {name: values.pop(name) for name in names}
            return command(**{k: v for k, v in values.items() if k in own_names}, options=options)

        with_options.__signature__ = inspect.Signature(own + cli_parameters(door))
        return with_options

    return decorate


@app.command()
@takes_segment_options("segment")
def segment(
    scene: Path = typer.Argument(..., help="Orthophoto GeoTIFF (RGB or RGB+NIR, any size, any CRS).", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes, only the summary."),
    options: dict = None,
) -> None:
    """Find standing dead trees in SCENE and write their outlines as polygons.

    Each polygon carries its area (m²), perimeter (m) and the model's mean and highest dead-tree probability
    inside it. Nodata, masked and edge-fill areas never produce polygons.
    """
    from deadtree.cli.heap import bound_this_process_heap
    from deadtree.options import from_cli
    from deadtree.pipeline import segment_scene

    log_to_stderr(quiet)
    bound_this_process_heap()
    with reported("interrupted: no output written"):
        result = segment_scene(scene, from_cli("segment", options, progress=not quiet))
    written = ", ".join(str(p) for p in result.outputs.values())
    typer.echo(f"{result.summary()} -> {written}")


@app.command("segment-many")
@takes_segment_options("segment-many")
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, only failures and the summary."),
    options: dict = None,
) -> None:
    """Segment many scenes in parallel, resumably, and merge all their polygons into one file.

    Scenes already done in OUT_DIR with the same options are skipped, so an interrupted run picks up where it stopped.
    A scene that fails is reported on one line and the others go on; the exit code is then 1.
    """
    from deadtree.batch import BatchOptions, find_scenes, run_batch
    from deadtree.cli.heap import bound_this_process_heap
    from deadtree.options import from_cli

    bound_this_process_heap()
    with reported("interrupted: scenes finished so far are kept and will be skipped next time"):
        batch = BatchOptions(out_dir=out_dir, scheduler=scheduler, workers=workers, merged=merged,
                             segment=from_cli("segment-many", options), progress=not quiet)
        result = run_batch(find_scenes(scenes), batch)
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(code=1)
