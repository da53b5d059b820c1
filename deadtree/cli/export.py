"""Commands that turn trained checkpoints into shipped ONNX models."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401

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
    checkpoint_dir: Optional[Path] = typer.Option(
        None, "--checkpoint-dir", help="Also keep the weights as NAME-VERSION.pt here (half precision, no "
        "optimiser state), to warm-start later training with `train segmenter --init-from`."),
) -> None:
    """Export a trained segmenter to ONNX with its metadata and write its model card."""
    import shlex
    import sys

    from deadtree.tiling import check_tile
    from deadtree.training.export import export_segmenter_with_card

    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    try:
        check_tile(tile, overlap, ("--tile", "--overlap"))
    except DeadtreeError as exc:
        fail(str(exc))
    if not name.strip() or "/" in name or "\\" in name or not version.strip():
        fail("--name and --version must be non-empty, and the name a file name (no folders)")
    command = "deadtree " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path, difference = export_segmenter_with_card(checkpoint, out_dir, name, version, tile, overlap, default,
                                                  description, command)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, parity {difference:.1e}) and its card")
    if checkpoint_dir:
        from deadtree.training.slim import write_slim_checkpoint

        # half precision, no optimiser state: enough for --init-from (a new schedule anyway) and for export
        kept = write_slim_checkpoint(checkpoint, Path(checkpoint_dir) / f"{name}-{version}.pt")
        typer.echo(f"wrote {kept} ({kept.stat().st_size / 1e6:.1f} MB) for warm starts")


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
    from deadtree.training.variants import make_variants

    try:
        for line in make_variants(model, data, out_dir, int8=int8, fp16=fp16, max_frames=frames):
            typer.echo(line)
    except DeadtreeError as exc:
        fail(str(exc))
