"""The form options a client sends with a scene, checked, and turned into the pipeline's SegmentOptions."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from deadtree.bands import parse_band_list
from deadtree.errors import DeadtreeError
from deadtree.pipeline import SegmentOptions, check_mask_options, check_scales, parse_scales
from deadtree.runtime.registry import PRECISIONS, model_names

from service.errors import ApiError
from service.jobfiles import MEDIA_TYPES
from service.models import find_shipped

FORMATS = tuple(MEDIA_TYPES)
FORM_FIELDS = ("model", "translator", "threshold", "min_area", "min_peak", "format", "bands", "precision", "flips",
               "scales", "ensemble")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class JobOptions:
    model: str | None = None  # a shipped segmenter's name; None: the default for the scene's bands
    translator: str | None = None
    threshold: float | None = None
    min_area: float = SegmentOptions.min_area  # square metres, as `segment --min-area`
    min_peak: float | None = None  # as `segment --min-peak`; None: the model's own
    format: str = "geojson"
    bands: tuple[str, ...] | None = None
    precision: str = "auto"  # as `segment --precision`
    flips: bool = False  # as `segment --flips`
    scales: tuple[float, ...] = ()  # as `segment --scales`
    ensemble: tuple[str, ...] = ()  # shipped segmenter names, as `segment --ensemble`

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> "JobOptions":
        unknown = sorted(set(fields) - set(FORM_FIELDS))
        if unknown:
            raise _invalid(f"unknown form field {unknown[0]!r}; known fields: file, {', '.join(FORM_FIELDS)}")
        values = {k: v.strip() for k, v in fields.items() if v.strip() != ""}
        threshold, min_area, min_peak = (_number(values, k) for k in ("threshold", "min_area", "min_peak"))
        min_area = SegmentOptions.min_area if min_area is None else min_area
        try:
            check_mask_options(threshold, min_area, min_peak)
        except DeadtreeError as exc:
            raise _invalid(_form_words(str(exc))) from None
        fmt = values.get("format", "geojson").lower()
        if fmt not in FORMATS:
            raise _invalid(f"format must be one of {', '.join(FORMATS)}, not {values['format']!r}")
        bands = None
        if "bands" in values:
            try:
                bands = parse_band_list(values["bands"], for_scene=True)
            except DeadtreeError as exc:
                raise _invalid(_form_words(str(exc))) from None
        precision = values.get("precision", "auto").lower()
        if precision not in PRECISIONS:
            raise _invalid(f"precision must be one of {', '.join(PRECISIONS)}, not {values['precision'][:40]!r}")
        try:
            scales = parse_scales(values.get("scales"))
            check_scales(scales)
        except DeadtreeError as exc:
            raise _invalid(_form_words(str(exc))) from None
        ensemble = _names(values, "ensemble")
        if ensemble and values.get("translator"):
            raise _invalid("ensemble and translator cannot be combined")
        return cls(model=_name(values, "model"), translator=_name(values, "translator"), threshold=threshold,
                   min_area=min_area, min_peak=min_peak, format=fmt, bands=bands, precision=precision,
                   flips=_flag(values, "flips"), scales=scales, ensemble=ensemble)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bands"] = list(self.bands) if self.bands else None
        data["ensemble"] = list(self.ensemble)
        data["scales"] = list(self.scales)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "JobOptions":
        data = dict(data)
        data["bands"] = tuple(data["bands"]) if data.get("bands") else None
        data["ensemble"] = tuple(data.get("ensemble") or ())
        data["scales"] = tuple(data.get("scales") or ())
        return cls(**data)

    def segment_options(self, geojson: Path, gpkg: Path | None, device: str, max_pixels: float,
                        source_name: str | None = None) -> SegmentOptions:
        """Models are named by the files of shipped models: a client's text never reaches a path lookup
        (an unknown name is a ModelError)."""
        def file(name: str, task: str) -> str:
            return str(find_shipped(name, task).path)

        return SegmentOptions(
            output=geojson, gpkg=gpkg, model=file(self.model, "segmenter") if self.model else None,
            translator=file(self.translator, "translator") if self.translator else None, bands=self.bands,
            threshold=self.threshold, min_area=self.min_area, min_peak=self.min_peak, device=device,
            max_pixels=max_pixels,
            source_name=source_name, precision=self.precision, flips=self.flips, scales=self.scales,
            ensemble=tuple(file(name, "segmenter") for name in self.ensemble),
        )


def _invalid(detail: str) -> ApiError:
    return ApiError(422, "invalid_option", detail)


def _form_words(text: str) -> str:
    """A pipeline message in the form's words: its options are form fields here (--min-area -> min_area)."""
    return re.sub(r"--([a-z]+(?:-[a-z]+)*)", lambda option: option.group(1).replace("-", "_"), text)


def _number(values: dict[str, str], key: str) -> float | None:
    if key not in values:
        return None
    try:
        number = float(values[key])
    except ValueError:
        raise _invalid(f"{key} must be a number, not {values[key][:40]!r}") from None
    if not math.isfinite(number):
        raise _invalid(f"{key} must be a finite number")
    return number


def _flag(values: dict[str, str], key: str) -> bool:
    word = values.get(key, "false").lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise _invalid(f"{key} must be true or false, not {values[key][:40]!r}")
    return word in TRUE_WORDS


def _names(values: dict[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated list of model names."""
    if key not in values:
        return ()
    names = model_names([values[key]])
    for name in names:
        _name({key: name}, key)
    return names


def _name(values: dict[str, str], key: str) -> str | None:
    name = values.get(key)
    if name is not None and (len(name) > MAX_NAME_LENGTH or not name.isprintable()):
        raise _invalid(f"{key} is not a model name: see GET /v1/models")
    return name
