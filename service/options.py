"""The form options a client sends with a scene: the segment options of the service's door
(deadtree.options, parsed as the CLI parses its text) and the result's format."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from deadtree.errors import DeadtreeError
from deadtree.options import SERVICE, SegmentOptions, door_fields

from service.errors import ApiError
from service.jobfiles import MEDIA_TYPES
from service.models import find_shipped

FORMATS = tuple(MEDIA_TYPES)
OPTION_FIELDS = tuple(f.name for f in door_fields(SERVICE))
FORM_FIELDS = (*OPTION_FIELDS, "format")
MAX_NAME_LENGTH = 100
NAMED_MODELS = ("model", "translator")


@dataclass(frozen=True)
class JobOptions:
    format: str = "geojson"
    segment: SegmentOptions = dataclasses.field(default_factory=SegmentOptions)  # the service's fields only

    def __getattr__(self, name: str):
        if name in OPTION_FIELDS:
            return getattr(self.segment, name)
        raise AttributeError(name)

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> "JobOptions":
        unknown = sorted(set(fields) - set(FORM_FIELDS))
        if unknown:
            raise _invalid(f"unknown form field {unknown[0]!r}; known fields: file, {', '.join(FORM_FIELDS)}")
        fields = dict(fields)
        fmt = (fields.pop("format", "") or "geojson").strip().lower() or "geojson"
        if fmt not in FORMATS:
            raise _invalid(f"format must be one of {', '.join(FORMATS)}, not {fmt[:40]!r}")
        for key in (*NAMED_MODELS, "ensemble"):
            for name in fields.get(key, "").split(","):
                if len(name.strip()) > MAX_NAME_LENGTH or not name.strip().isprintable():
                    raise _invalid(f"{key} is not a model name: see GET /v1/models")
        try:
            segment = SegmentOptions.from_text(fields, SERVICE)
        except DeadtreeError as exc:
            raise _invalid(_form_words(str(exc))) from None
        return cls(fmt, segment)

    def to_dict(self) -> dict:
        settings = self.segment.settings()
        return {"format": self.format, **{name: settings[name] for name in OPTION_FIELDS}}

    @classmethod
    def from_dict(cls, data: dict) -> "JobOptions":
        data = dict(data)
        fmt = data.pop("format", "geojson")
        return cls(fmt, SegmentOptions.from_settings({k: v for k, v in data.items() if k in OPTION_FIELDS}))

    def segment_options(self, geojson: Path, gpkg: Path | None, device: str, max_pixels: float,
                        source_name: str | None = None) -> SegmentOptions:
        """Models are named by the files of shipped models: a client's text never reaches a path lookup
        (an unknown name is a ModelError)."""
        def file(name: str, task: str) -> str:
            return str(find_shipped(name, task).path)

        s = self.segment
        return dataclasses.replace(
            s, output=geojson, gpkg=gpkg, model=file(s.model, "segmenter") if s.model else None,
            translator=file(s.translator, "translator") if s.translator else None,
            ensemble=tuple(file(name, "segmenter") for name in s.ensemble), device=device, max_pixels=max_pixels,
            source_name=source_name)


def _invalid(detail: str) -> ApiError:
    return ApiError(422, "invalid_option", detail)


def _form_words(text: str) -> str:
    """A pipeline message in the form's words: its options are form fields here (--min-area -> min_area)."""
    return re.sub(r"--([a-z]+(?:-[a-z]+)*)", lambda option: option.group(1).replace("-", "_"), text)
