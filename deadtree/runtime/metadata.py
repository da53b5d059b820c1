"""What a model needs, read from its ONNX metadata: the pipeline configures itself from this."""
from __future__ import annotations

import copy
import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deadtree.errors import ModelError
from deadtree.runtime.onnx_props import metadata_props

METADATA_KEY = "deadtree"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    task: str  # "segmenter" or "translator"
    bands: tuple[str, ...]  # input bands in order, e.g. ("R", "G", "B", "NIR")
    gsd_m: float  # ground sampling distance the model was trained at, metres per pixel
    tile_size: int
    overlap: int
    threshold: float = 0.5  # segmenters: probability at or above which a pixel is dead tree
    min_peak: float = 0.0  # segmenters: a patch is kept only where its highest probability reaches this
    scaling: dict = field(default_factory=lambda: {"method": "percentile", "low_pct": 1.0, "high_pct": 99.0})
    input_range: tuple[float, float] = (0.0, 1.0)  # where the percentile stretch's 0..1 is mapped before input
    output_range: tuple[float, float] = (0.0, 1.0)  # translators: range of the translated image they write
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        """An int8 variant written by `deadtree export-variants`."""
        return self.extra.get("precision") == "int8"

    def to_json(self) -> str:
        data = asdict(self)
        data["bands"] = list(self.bands)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelInfo":
        try:
            data = json.loads(text)
            data["bands"] = tuple(data["bands"])
            data["input_range"] = tuple(data.get("input_range", (0.0, 1.0)))
            data["output_range"] = tuple(data.get("output_range", (0.0, 1.0)))
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{source} carries unreadable deadtree metadata: {exc}") from exc


def file_version(path: str | Path) -> tuple[str, int, int]:
    """A model file as it is now: its resolved path, size and modification time. Whatever is kept for a model
    (a session, a tidied graph) is kept under this, so a file written again is a new model."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def read_model_info(path: Path) -> ModelInfo:
    """Read the metadata without building an inference session (cheap enough for listing models).

    Parsed once per file version: one `segment` looks for the default model, its precision variant and the
    chosen file, and each lookup lists every shipped model (deadtree.runtime.onnx_props reads just the
    metadata, not the 14 MB graphs)."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    return copy.deepcopy(_read_model_info(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _read_model_info(path: str, mtime_ns: int, size: int) -> ModelInfo:
    try:
        props = metadata_props(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    if METADATA_KEY not in props:
        raise ModelError(f"{path} has no '{METADATA_KEY}' metadata: export it with `deadtree export`")
    return ModelInfo.from_json(props[METADATA_KEY], str(path))


def attach_info(model, info: ModelInfo):
    """Set `info` as the deadtree metadata of an onnx.ModelProto (replacing any), and return the model."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    return model


def rewrite_model_info(path: Path, info: ModelInfo) -> None:
    """Replace the metadata of an ONNX file in place (written to a temporary name, then renamed)."""
    import onnx

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    onnx.save(attach_info(onnx.load(str(path)), info), str(tmp))
    tmp.replace(path)
