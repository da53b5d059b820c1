"""Which ONNX files a segment job runs (segmenter at the asked precision, translator, ensemble members),
checked against each other and the scene's bands before any pixel is read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from deadtree.errors import InputError, ModelError
from deadtree.runtime.metadata import ModelInfo, read_model_info
from deadtree.runtime.registry import default_segmenter, precision_variant, resolve_model
from deadtree.options import SegmentOptions
from deadtree.runtime.session import OnnxModel, runs_on_gpu


@dataclass
class ModelChoice:
    segmenter: Path
    segmenter_info: ModelInfo
    translator: Path | None = None
    translator_info: ModelInfo | None = None
    members: list[tuple[Path, ModelInfo]] = field(default_factory=list)  # ensembled with the segmenter

    @property
    def first(self) -> ModelInfo:
        """The model that reads the scene (its scaling and tiles rule)."""
        return self.translator_info or self.segmenter_info

    @property
    def read_bands(self) -> tuple[str, ...]:
        """The bands read from a scene: the first model's, then any others an ensemble member needs."""
        bands = list(self.first.bands)
        for _, info in self.members:
            bands += [b for b in info.bands if b not in bands]
        return tuple(bands)


def segmenter_file(path: Path, options: SegmentOptions) -> Path:
    """The file that runs for a segmenter at the asked precision (its int8 / fp16 variant where chosen)."""
    return precision_variant(path, options.precision, on_gpu=runs_on_gpu(options.device))


def choose_models(scene_bands: Sequence[str], scene_name: str, options: SegmentOptions,
                  bands_hint: str = "give the band order with --bands") -> ModelChoice:
    """Which files will run, checked against each other and the scene's bands (metadata only: cheap, so the
    service runs it on an upload before queueing the job)."""
    if options.ensemble and options.translator:
        raise InputError("--ensemble and --translator cannot be combined")
    available = set(scene_bands)
    seg_path = resolve_model(options.model, "segmenter") if options.model else default_segmenter(available)
    seg_path = segmenter_file(seg_path, options)
    choice = ModelChoice(seg_path, read_model_info(seg_path))
    if options.translator:
        choice.translator = resolve_model(options.translator, "translator")
        choice.translator_info = read_model_info(choice.translator)
        if not set(choice.segmenter_info.bands) <= set(choice.translator_info.bands):
            raise ModelError(f"translator {choice.translator_info.name} writes "
                             f"{','.join(choice.translator_info.bands)} but segmenter "
                             f"{choice.segmenter_info.name} reads {','.join(choice.segmenter_info.bands)}")
    for name in options.ensemble:
        path = segmenter_file(resolve_model(name, "segmenter"), options)
        info = read_model_info(path)
        primary = choice.segmenter_info
        if info.gsd_m != primary.gsd_m or info.scaling != primary.scaling:
            raise ModelError(f"{info.name} cannot be ensembled with {primary.name}: they differ in ground "
                             "resolution or value scaling")
        choice.members.append((path, info))
    needed = choice.read_bands
    missing = [b for b in needed if b not in available]
    if missing:
        have = ",".join(scene_bands) or "no tagged bands"
        raise ModelError(f"{scene_name} has bands {have}; model {choice.first.name} needs "
                         f"{','.join(needed)} (missing {','.join(missing)}). If the file's tags are wrong, "
                         f"{bands_hint}")
    return choice


def open_models(choice: ModelChoice, options: SegmentOptions, sessions=None) -> tuple[OnnxModel, OnnxModel | None,
                                                                                       list[OnnxModel]]:
    """The chosen models, with sessions from `sessions` (a ModelSessions) where it holds some."""
    def model(path):
        return OnnxModel(path, options.device, options.threads, sessions)

    segmenter = model(choice.segmenter)
    translator = model(choice.translator) if choice.translator else None
    members = [model(path) for path, _ in choice.members]
    return segmenter, translator, members
