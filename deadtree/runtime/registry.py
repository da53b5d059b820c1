"""Finding shipped models by name, whether deadtree runs from a checkout, a wheel or the Docker image."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from deadtree.errors import ModelError
from deadtree.runtime.metadata import ModelInfo, read_model_info

ENV_MODELS_DIR = "DEADTREE_MODELS"


def model_dirs() -> list[Path]:
    """$DEADTREE_MODELS (folders separated by ':') when set, else the checkout's models/ and the installed
    <prefix>/share/deadtree/models (wheel, Docker image)."""
    if os.environ.get(ENV_MODELS_DIR):
        dirs = [Path(p) for p in os.environ[ENV_MODELS_DIR].split(os.pathsep) if p]
    else:
        dirs = [Path(__file__).resolve().parents[2] / "models", Path(sys.prefix) / "share" / "deadtree" / "models"]
    seen, unique = set(), []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if d.is_dir() and key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


@dataclass(frozen=True)
class ShippedModel:
    path: Path
    info: ModelInfo

    @property
    def card(self) -> Path:
        return self.path.with_suffix(".md")


def list_models() -> list[ShippedModel]:
    models: dict[str, ShippedModel] = {}
    for directory in model_dirs():
        for path in sorted(directory.glob("*.onnx")):
            try:
                info = read_model_info(path)
            except ModelError:
                continue
            models.setdefault(info.name, ShippedModel(path, info))
    return list(models.values())


def resolve_model(name_or_path: str, task: str) -> Path:
    """A path to an .onnx file, or the name of a shipped model."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".onnx" or os.sep in name_or_path:
        if not candidate.is_file():
            raise ModelError(f"model file not found: {name_or_path}")
        return candidate
    available = [m for m in list_models() if m.info.task == task]
    for model in available:
        if model.info.name == name_or_path:
            return model.path
    names = ", ".join(sorted(m.info.name for m in available)) or "none installed"
    raise ModelError(f"unknown {task} {name_or_path!r}; shipped {task}s: {names} (see `deadtree models`)")


def default_segmenter(scene_bands: set[str]) -> Path:
    """The shipped segmenter that uses the most of the scene's bands (RGB+NIR for 4-band, RGB for 3-band)."""
    candidates = [
        m for m in list_models()
        if m.info.task == "segmenter" and set(m.info.bands) <= scene_bands and m.info.extra.get("default", False)
    ]
    if not candidates:
        band_sets = sorted({",".join(m.info.bands) for m in list_models() if m.info.task == "segmenter"}, key=len)
        if not band_sets:
            raise ModelError("no segmenter is installed: reinstall deadtree, or name an .onnx file with --model")
        have = "bands " + ",".join(sorted(scene_bands)) if scene_bands else "no band tagged with a colour"
        raise ModelError(f"the shipped models need {' or '.join(band_sets)}, and this scene has {have}. Say which "
                         "file band is which with --bands, e.g. --bands R,G,B,NIR, or B,G,R,-,NIR to leave out a band")
    return max(candidates, key=lambda m: len(m.info.bands)).path


PRECISIONS = ("auto", "fp32", "int8", "fp16")


def precision_variant(model_path: Path, precision: str, on_gpu: bool) -> Path:
    """The file to run for a model at a precision: the model itself for fp32, else its shipped variant.

    auto means int8 on a CPU and fp16 on a GPU where such a variant is shipped (variants are only written when
    they match the fp32 model on the validation split: masks at IoU >= 0.98, scores within 0.01), else fp32."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    info = read_model_info(model_path)
    if precision == "fp32" or info.extra.get("variant_of"):
        return Path(model_path)
    wanted = precision if precision != "auto" else ("fp16" if on_gpu else "int8")
    for model in list_models():
        if model.info.name == f"{info.name}-{wanted}" and model.info.extra.get("variant_of") == info.name:
            return model.path
    if precision == "auto":
        return Path(model_path)
    raise ModelError(f"{info.name} has no {wanted} variant installed; use --precision fp32 or auto "
                     "(`deadtree export-variants` makes variants)")


def model_names(values: Iterable[str]) -> tuple[str, ...]:
    """Model names from comma-separated lists: `--ensemble a,b`, `--ensemble a --ensemble b` and the service's
    `ensemble=a,b` all mean the same."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())
