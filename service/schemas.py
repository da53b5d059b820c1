"""What the API sends and takes, as it appears in the generated OpenAPI document (with examples)."""
from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deadtree.pipeline import SegmentOptions
from deadtree.runtime.registry import PRECISIONS

from service.jobfiles import MEDIA_TYPES
from service.options import FORMATS, MAX_NAME_LENGTH

JOB_ID_EXAMPLE = "3f2b8c1e9a7d4e6f8b0c2d4e6f8a0b1c"


class ErrorBody(BaseModel):
    status: int = Field(description="The HTTP status, repeated for clients that only keep the body.")
    code: str = Field(description="A stable machine-readable reason, e.g. invalid_scene, upload_too_large.")
    detail: str = Field(description="One line for a person: what is wrong and what to do about it.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": 422, "code": "invalid_scene",
        "detail": "orthophoto.tif has no coordinate reference system: assign one, e.g. rio edit-info "
                  "orthophoto.tif --crs EPSG:XXXX (rasterio's tool, installed with deadtree)",
    }]})


def _job_options_out() -> type[BaseModel]:
    """The options a job was made with, as GET /v1/jobs/{id} shows them: the form's fields (deadtree.options)
    with lists for its comma-separated ones."""
    from typing import Optional

    from pydantic import create_model

    from deadtree.options import SERVICE, door_fields, field_types

    fields = {"format": (Literal["geojson", "gpkg"], "geojson")}
    for f in door_fields(SERVICE):
        declared = field_types()[f.name]
        inner = _without_none(declared)
        optional = inner is not declared
        if typing.get_origin(inner) is tuple:  # comma-separated in the form, a list in the JSON
            inner = list[typing.get_args(inner)[0]]
        shown = Optional[inner] if optional else inner
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        fields[f.name] = (shown, default)
    return create_model("JobOptionsOut", **fields)


def _without_none(declared):
    """X for Optional[X]; anything else as it is."""
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    return args[0] if typing.get_origin(declared) in (typing.Union, types.UnionType) and len(args) == 1 else declared


JobOptionsOut = _job_options_out()


class JobResult(BaseModel):
    url: str = Field(description="GET this for the polygons.")
    media_type: str
    polygons: int
    area_m2: float
    seconds: float
    model: str
    model_version: str
    translator: str | None
    provider: str
    tiles: int
    tiles_skipped: int
    min_peak: float = Field(0.0, description="The peak filter's floor that was applied.")
    faint_dropped: int = Field(0, description="Patches left out because their highest probability stayed "
                                             "under min_peak.")


class JobStatus(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0, le=1, description="Fraction done, 0 to 1.")
    filename: str = Field(description="The uploaded file's name, as the client sent it (display only).")
    options: JobOptionsOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None = Field(description="Time spent waiting for a worker.")
    run_seconds: float | None = Field(description="Time spent running so far, or in all once finished.")
    attempts: int = Field(description="Runs started; above 1 after a server restart interrupted a run.")
    error: ErrorBody | None
    result: JobResult | None
    expires_at: datetime | None = Field(description="When a finished job and its result are removed.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": JOB_ID_EXAMPLE, "state": "succeeded", "progress": 1.0, "filename": "orthophoto.tif",
        "options": {"model": None, "translator": None, "threshold": None, "min_area": SegmentOptions.min_area,
                    "format": "geojson", "bands": None},
        "created_at": "2025-06-01T10:00:00Z", "started_at": "2025-06-01T10:00:02Z",
        "finished_at": "2025-06-01T10:01:30Z", "queued_seconds": 2.0, "run_seconds": 88.0, "attempts": 1,
        "error": None,
        "result": {"url": f"/v1/jobs/{JOB_ID_EXAMPLE}/result", "media_type": "application/geo+json",
                   "polygons": 412, "area_m2": 5230.5, "seconds": 87.6, "model": "deadtree-rgbn",
                   "model_version": "1.0", "translator": None, "provider": "CPUExecutionProvider", "tiles": 380,
                   "tiles_skipped": 12, "min_peak": 0.85, "faint_dropped": 37},
        "expires_at": "2025-06-02T10:01:30Z",
    }]})


class ModelCard(BaseModel):
    name: str
    version: str
    task: str = Field(description="segmenter or translator.")
    bands: list[str]
    gsd_m: float = Field(description="Ground sampling distance the model was trained at (m per pixel).")
    tile_size: int
    overlap: int
    threshold: float
    min_peak: float = Field(0.0, description="Polygons whose highest probability is below this are dropped.")
    description: str
    default: bool = Field(description="Used when the request names no model and the scene has its bands.")
    validation: dict | None = Field(description="Scores on held-out validation data.")
    card: str | None = Field(description="The model card (Markdown).")


class ModelList(BaseModel):
    models: list[ModelCard]

    model_config = ConfigDict(json_schema_extra={"examples": [{"models": [{
        "name": "deadtree-rgbn", "version": "1.0", "task": "segmenter", "bands": ["R", "G", "B", "NIR"],
        "gsd_m": 0.6, "tile_size": 256, "overlap": 32, "threshold": 0.5,
        "description": "U-Net for standing dead trees in RGB+NIR orthophotos", "default": True,
        "validation": {"pixel_iou": 0.61, "object_f1": 0.72}, "card": "# deadtree-rgbn\n...",
    }]}]})


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="Each check's outcome: 'ok' or what is wrong.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ready", "checks": {"database": "ok", "workers": "ok", "data_dir": "ok", "models": "ok"}}]})


def form_properties() -> dict:
    """The segment options of the form, from deadtree.options: each field's type, default and help."""
    import dataclasses

    from deadtree.options import SERVICE, door_fields

    from deadtree.options import field_types

    kinds = {float: "number", bool: "boolean", int: "integer"}
    properties = {}
    for f in door_fields(SERVICE):
        declared = _without_none(field_types()[f.name])
        prop = {"type": kinds.get(declared, "string"), "description": f.metadata["option"].help}
        if f.name in ("model", "translator"):
            prop["maxLength"] = MAX_NAME_LENGTH
        if f.name == "precision":
            prop["enum"] = list(PRECISIONS)
        if f.default not in (None, ()) and f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        properties[f.name] = prop
    return properties


def upload_request_body(description: str) -> dict:
    """The multipart body, written out by hand: the endpoints stream it themselves instead of letting FastAPI
    read it into memory, so FastAPI cannot derive it from their signatures."""
    return {
        "required": True,
        "description": description,
        "content": {"multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "The orthophoto: a GeoTIFF with a CRS, RGB or RGB+NIR."},
                    **form_properties(),
                    "format": {"type": "string", "enum": list(FORMATS), "default": "geojson",
                               "description": "geojson: RFC 7946 in WGS 84 lon/lat; gpkg: GeoPackage in the "
                                              "scene's CRS."},
                },
            },
            "encoding": {"file": {"contentType": "image/tiff, application/octet-stream"}},
        }},
    }


GEOJSON_EXAMPLE = {
    "type": "FeatureCollection", "name": "dead_trees",
    "features": [{"type": "Feature", "id": 1,
                  "properties": {"id": 1, "area_m2": 12.6, "perimeter_m": 13.2, "score_mean": 0.83,
                                 "score_max": 0.97},
                  "geometry": {"type": "Polygon", "coordinates": [[[15.0001, 60.4001], [15.0002, 60.4001],
                                                                   [15.0002, 60.4002], [15.0001, 60.4001]]]}}],
}

RESULT_CONTENT = {
    MEDIA_TYPES["geojson"]: {"schema": {"type": "object"}, "example": GEOJSON_EXAMPLE},
    MEDIA_TYPES["gpkg"]: {"schema": {"type": "string", "format": "binary"}},
}


def error_responses(*statuses: int) -> dict:
    reasons = {
        400: "The request body is malformed.",
        401: "An API key is configured and the request has none, or a wrong one.",
        404: "No such job (finished jobs are removed once they expire).",
        409: "The job has not succeeded (yet).",
        413: "The upload or the raster it declares is larger than allowed.",
        415: "The body is not multipart/form-data.",
        422: "The scene or an option cannot be used: the detail says why.",
        503: "The queue is full: try again after Retry-After seconds.",
        507: "The server's disk is full for now: try again after Retry-After seconds.",
    }
    return {status: {"model": ErrorBody, "description": reasons[status]} for status in statuses}
