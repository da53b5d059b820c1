"""The typer applications and the helpers every command shares."""
from __future__ import annotations

from contextlib import contextmanager

import typer

app = typer.Typer(
    help="Map standing dead trees in aerial orthophotos: GeoTIFF in, georeferenced polygons out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if not value:
        return
    import onnxruntime
    import rasterio

    from deadtree import __version__

    # the versions a bug report needs: the package, its runtime, and the GDAL inside rasterio's wheel
    typer.echo(f"deadtree {__version__} (onnxruntime {onnxruntime.__version__}, providers "
               f"{', '.join(onnxruntime.get_available_providers())}; rasterio {rasterio.__version__}, "
               f"GDAL {rasterio.__gdal_version__})")
    raise typer.Exit()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def unwind_on_terminate() -> None:
    """`kill`, `docker stop` and batch schedulers send SIGTERM, which ends a process where it stands and would
    leave its hidden work folder beside the outputs: unwind as for Ctrl-C instead, cleaning up on the way."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the versions of deadtree, ONNX Runtime and GDAL, and exit."),
) -> None:
    """Map standing dead trees in aerial orthophotos: GeoTIFF in, georeferenced polygons out."""
    unwind_on_terminate()


train_app = typer.Typer(help="Train models on your own annotated imagery (needs: pip install 'deadtree\\[train]').",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")


def flow_command_help(*typers: typer.Typer) -> None:
    """Join the single line breaks of each command's docstring paragraphs.

    Typer keeps the source's line breaks in every paragraph after the first, so docstrings wrapped at 120
    columns print as ragged half-lines in an 80-column terminal."""
    import inspect

    for group in typers:
        for command in group.registered_commands:
            text = command.help or inspect.getdoc(command.callback) or ""
            command.help = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def fail(message: str) -> None:
    """One red line on stderr and exit code 2: what every user-facing error looks like."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@contextmanager
def reported(interrupted: str):
    """A command's work: deadtree's errors as one line, and an interrupt (Ctrl-C, SIGTERM) as `interrupted`,
    both with exit code 2."""
    from deadtree.errors import DeadtreeError

    try:
        yield
    except DeadtreeError as exc:
        fail(str(exc))
    except BaseException as exc:
        if not came_from_interrupt(exc):
            raise
        fail(interrupted)


def came_from_interrupt(exc: BaseException | None) -> bool:
    """Whether `exc` is an interrupt or was raised while handling one: an interrupt that lands during a first
    `import onnxruntime` reaches the caller as ONNX Runtime's ImportError("initialization failed")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def log_to_stderr(quiet: bool) -> None:
    import logging

    logger = logging.getLogger("deadtree")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
