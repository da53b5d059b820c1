"""Every option of a segment run, declared once: its type, default, check, and the words each front door uses.

`SegmentOptions` is what `segment_scene` takes. The front doors derive from it:
- the CLI's `segment` and `segment-many` build their parameters from `cli_parameters(door)`;
- `segment-many` records a scene's result-deciding options with `settings()` and gives them to its workers,
  which rebuild the options with `from_settings()`;
- the service reads its form fields with `from_text()` (the same parsing as the CLI's text options) and
  stores them with `settings()`.
A new option is one field here (with its `option(...)` wording), and each door that lists it takes it.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from deadtree.errors import InputError, ModelError

SEGMENT, MANY, SERVICE = "segment", "segment-many", "service"
EVERY_DOOR = frozenset({SEGMENT, MANY, SERVICE})
PRECISIONS = ("auto", "fp32", "int8", "fp16")
PREVIEW_BANDS = ("rgb", "nir")
MAX_SCALES = 3  # each magnification costs the model time again at its square
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Option:
    """How one SegmentOptions field appears at the front doors."""
    help: str  # what it does and what it costs; the CLI's help, the service's description
    doors: frozenset = EVERY_DOOR
    flags: tuple[str, ...] = ()  # the CLI's names; default --field-name
    text: Callable[[str], Any] | None = None  # parses the CLI's or the form's text into the field's value
    cli_type: Any = None  # the type typer parses, where it is not the field's own (lists arrive as text)
    result: bool = True  # decides a scene's result: part of segment-many's settings


def option(default, help: str, **how) -> Any:
    return dataclasses.field(default=default, metadata={"option": Option(help, **how)})


def internal(default) -> Any:
    """A field set by the code (the CLI's --quiet, the service's limits), not by a user at a door."""
    return dataclasses.field(default=default, metadata={"option": Option("", doors=frozenset(), result=False)})


def parse_scales(text: str | None) -> tuple[float, ...]:
    """`--scales 1.5,2` (or the service's `scales` field) as magnifications."""
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--scales {text[:40]!r}: give magnifications as numbers, e.g. 1.5 or 1.5,2") from None


def _band_list(text: str) -> tuple[str, ...]:
    from deadtree.bands import parse_band_list

    return parse_band_list(text, for_scene=True)


def _names(text: str) -> tuple[str, ...]:
    from deadtree.runtime.registry import model_names

    return model_names([text])


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise InputError(f"--{{name}} must be true or false, not {text[:40]!r}")
    return word in TRUE_WORDS


def _number(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"--{{name}} must be a number, not {text[:40]!r}") from None
    if not math.isfinite(number):
        raise InputError("--{name} must be a finite number")
    return number


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--{{name}} must be a whole number, not {text[:40]!r}") from None


SCENE_OUTPUTS = frozenset({SEGMENT})  # files named by the user: segment-many and the service name their own


@dataclass
class SegmentOptions:
    """What a `segment_scene` run does. Every field has the default the CLI shows."""

    output: Optional[Path] = option(None, "GeoJSON to write (WGS 84 lon/lat, opens in QGIS as is). Default: "
                                    "SCENE_NAME.deadtrees.geojson in the current folder.", doors=SCENE_OUTPUTS,
                                    flags=("-o", "--output"), result=False)
    gpkg: Optional[Path] = option(None, "Also write a GeoPackage in the scene's own CRS, styled for QGIS.",
                                  doors=SCENE_OUTPUTS, result=False)
    probabilities: Optional[Path] = option(None, "Also write the dead-tree probability raster (Cloud Optimized "
                                           "GeoTIFF).", doors=SCENE_OUTPUTS, result=False)
    qml: bool = option(False, "Also write the QGIS style beside the GeoJSON (same name, .qml), so QGIS shows the "
                       "outlines coloured by score_mean. The GeoPackage always carries this style.",
                       doors=SCENE_OUTPUTS, result=False)
    preview: Optional[Path] = option(None, "Also write a quicklook PNG of the scene with the polygons outlined.",
                                     doors=SCENE_OUTPUTS, result=False)
    preview_bands: str = option("rgb", "Colours of the --preview: rgb (true colour) or nir (NIR,R,G false "
                                "colour).", doors=SCENE_OUTPUTS, result=False)
    model: Optional[str] = option(None, "Segmenter name (see `deadtree models`) or .onnx file. Default: the "
                                  "shipped model for the scene's bands (RGB+NIR for 4-band scenes, RGB for 3-band).")
    ensemble: tuple[str, ...] = option((), "Other segmenters (names or .onnx, comma-separated or the option "
                                       "repeated) whose probabilities are averaged with the main model's. Each "
                                       "costs the model time once more.", text=_names, cli_type=Optional[list[str]])
    translator: Optional[str] = option(None, "Translate the imagery to the look the segmenter was trained on "
                                       "first (an ADA-Net translator name or .onnx file): for sites unlike the "
                                       "training data. Adds the translator's time per tile.")
    bands: Optional[tuple[str, ...]] = option(None, "The scene's bands in file order when the file's colour tags "
                                              "are missing or wrong, e.g. R,G,B,NIR or NIR,R,G,B; '-' for a band no "
                                              "model reads (B,G,R,-,NIR) and alpha for a transparency mask "
                                              "(R,G,B,alpha).", text=_band_list, cli_type=Optional[str])
    threshold: Optional[float] = option(None, "Probability (0-1) from which a pixel counts as dead tree. "
                                        "Default: the model's own, tuned on validation data. Lower finds more, "
                                        "with more false alarms.", text=_number)
    min_area: float = option(1.0, "Drop polygons and fill holes smaller than this (m²).", text=_number)
    min_peak: Optional[float] = option(None, "Keep a polygon only where its highest dead-tree probability "
                                       "reaches this (0-1; 0 keeps all): faint patches are mostly false alarms. "
                                       "Default: the model's own, tuned for object F1 on validation data.",
                                       text=_number)
    simplify: float = internal(0.75)  # pixels; see vector.geometry.clean_outline
    tile_size: Optional[int] = option(None, "Tile size in model pixels (default: the model's).",
                                      doors=frozenset({SEGMENT}), text=_whole)
    overlap: Optional[int] = option(None, "Overlap between tiles in pixels (default: the model's).",
                                    doors=frozenset({SEGMENT}), text=_whole)
    batch_size: Optional[int] = option(None, "Tiles per model call (default: as many as fit 8 tiles of 256 px).",
                                       doors=frozenset({SEGMENT}), text=_whole, result=False)
    device: str = option("auto", "auto, cpu, cuda or tensorrt. auto takes the fastest present.",
                         doors=frozenset({SEGMENT, MANY}))
    precision: str = option("auto", "auto, fp32, int8 or fp16. auto runs the model's shipped int8 variant on a "
                            "CPU and its fp16 variant on a GPU (each checked against fp32 on the validation "
                            "split), else fp32.", text=str.lower)
    flips: bool = option(False, "Average the model over each tile and its two mirror images: 3x the model time.",
                         text=_flag)
    scales: tuple[float, ...] = option((), "Also run the model on each tile magnified by these factors "
                                       "(comma-separated, above 1 and at most 3, e.g. 1.5) and average: small "
                                       "crowns drawn larger. Each factor s adds s² times the model time.",
                                       text=parse_scales, cli_type=Optional[str])
    threads: Optional[int] = internal(None)  # CPU threads for the model; default: every core this process may use
    grid_offset: int = internal(0)  # shifts the tile grid (pixels); for checking that tiling leaves no trace
    trim_tiles: bool = internal(True)  # cut the last tiles of each row and column short at the scene's edge
    progress: bool = internal(False)
    max_pixels: Optional[float] = internal(None)
    source_name: Optional[str] = internal(None)  # recorded as the source scene (e.g. an upload's file name)

    def check(self) -> None:
        """Refuse options that would fail deep in a run, or run and mean nothing, before any work starts."""
        from deadtree.tiling import check_tile

        if self.threshold is not None and not 0 < self.threshold < 1:
            raise InputError("--threshold must be between 0 and 1 (exclusive)")
        if not self.min_area >= 0:
            raise InputError("--min-area cannot be negative")
        if self.min_peak is not None and not 0 <= self.min_peak <= 1:
            raise InputError("--min-peak must be between 0 and 1")
        check_tile(self.tile_size, self.overlap)
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        check_scales(self.scales)
        if self.precision not in PRECISIONS:
            raise ModelError(f"unknown precision {self.precision[:40]!r}: use {', '.join(PRECISIONS)}")
        if self.preview_bands not in PREVIEW_BANDS:
            raise InputError(f"--preview-bands must be rgb or nir, not {self.preview_bands[:40]!r}")
        if self.ensemble and self.translator:
            raise InputError("--ensemble and --translator cannot be combined")

    def settings(self) -> dict:
        """The options that decide a scene's result, as JSON values (segment-many's markers, the service's jobs)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if _spec(f).result}

    @classmethod
    def from_settings(cls, settings: dict, **more) -> "SegmentOptions":
        """The inverse of settings(), with other fields (outputs, threads) set from `more`."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: _from_json(known[k], v) for k, v in settings.items() if k in known}
        return cls(**values, **more)

    @classmethod
    def from_text(cls, fields: dict[str, str], door: str, **more) -> "SegmentOptions":
        """Options from text fields (a form), named as the fields: parsed as the CLI parses them, then checked.
        Blank fields take the default; a field this door does not take is refused."""
        known = {f.name: f for f in dataclasses.fields(cls) if door in _spec(f).doors}
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r}")
        values = {}
        for name, text in fields.items():
            if text.strip() == "":
                continue
            parse = _spec(known[name]).text
            try:
                values[name] = parse(text.strip()) if parse else text.strip()
            except InputError as error:
                raise InputError(str(error).replace("{name}", name.replace("_", "-"))) from None
        options = cls(**values, **more)
        options.check()
        return options


def check_scales(scales) -> None:
    if any(not 1 < s <= 3 for s in scales):
        raise InputError("--scales takes magnifications above 1 and at most 3, e.g. --scales 1.5")
    if len(scales) > MAX_SCALES or len(set(scales)) != len(scales):
        raise InputError(f"--scales takes at most {MAX_SCALES} different magnifications")


def door_fields(door: str) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(SegmentOptions) if door in _spec(f).doors]


def cli_parameters(door: str) -> list[inspect.Parameter]:
    """The typer parameters of a CLI command for the options its door takes."""
    import typer

    parameters = []
    for f in door_fields(door):
        spec = _spec(f)
        flags = spec.flags or (f"--{f.name.replace('_', '-')}",)
        default = None if spec.text and spec.cli_type else f.default  # text options arrive as typer's None
        annotation = spec.cli_type or field_types()[f.name]
        parameters.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
            default=typer.Option(default, *flags, help=spec.help, show_default=default not in (None, False, ()))))
    return parameters


def from_cli(door: str, values: dict, **more) -> SegmentOptions:
    """SegmentOptions from the values typer parsed for `cli_parameters(door)`, checked."""
    converted = {}
    for f in door_fields(door):
        value = values[f.name]
        spec = _spec(f)
        if spec.text and spec.cli_type and value is not None:
            value = spec.text(",".join(value) if isinstance(value, list) else value)
        elif value is None and f.default is not None:
            value = f.default
        converted[f.name] = value
    options = SegmentOptions(**converted, **more)
    options.check()
    return options


def _spec(f: dataclasses.Field) -> Option:
    return f.metadata["option"]


@functools.lru_cache(maxsize=1)
def field_types() -> dict:
    """SegmentOptions' field types as types (its annotations are text here, from __future__)."""
    return typing.get_type_hints(SegmentOptions)


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_json(f: dataclasses.Field, value):
    if isinstance(value, list):
        return tuple(value)
    if value is not None and Path in (field_types()[f.name], *typing.get_args(field_types()[f.name])):
        return Path(value)
    return value
