"""`deadtree validate`: `segment` itself run on annotated frames, scored by how the frames' counties relate to the
model's training split.

A Kaggle download of the USA set holds frames from counties the shipped models trained on, counties they were
validated on, and perhaps counties they never saw. Only the last two say how a model does on new imagery, so
the scores are kept apart by county rather than pooled into one flattering figure.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio

from deadtree.evaluation.evaluate import Grid, polygons_to_mask
from deadtree.metrics import Scores
from deadtree.pipeline import SegmentOptions, segment_scene

ROLE_TITLES = {
    "validation": "validation counties",
    "unseen": "new counties",
    "training": "training counties",
    "not recorded": "other counties",
}
ROLE_NOTES = {
    "validation": "held out of training, used to choose the model",
    "unseen": "in neither side of its split",
    "training": "learnt from: these scores flatter it",
    "not recorded": "not validation; the model does not record which counties it trained on",
}


def segment_mask(scene: Path, tmp: Path, grid: Grid | None = None, sessions=None, **options) -> np.ndarray:
    """Where `segment` (with these SegmentOptions fields) draws dead trees on `scene`, as a mask of `grid` (by
    default the scene's own)."""
    polygons = tmp / "scene.gpkg"
    segment_scene(scene, SegmentOptions(output=tmp / "scene.geojson", gpkg=polygons, **options), sessions=sessions)
    if grid is None:
        with rasterio.open(scene) as ds:
            grid = Grid.of(ds)
    return polygons_to_mask(polygons, grid)


def county_role(group: str, validation: set[str], training: set[str]) -> str:
    """Which side of the model's split a frame's county was on; 'not recorded' for a model that keeps no list
    of its training counties (one exported before its trainer recorded them)."""
    if group in validation:
        return "validation"
    if not training:
        return "not recorded"
    return "training" if group in training else "unseen"


@dataclass
class FrameValidation:
    """Scores pooled per county role, and each county's own."""

    by_role: dict[str, Scores] = field(default_factory=dict)
    by_county: dict[str, Scores] = field(default_factory=dict)
    role_frames: dict[str, int] = field(default_factory=dict)
    county_frames: dict[str, int] = field(default_factory=dict)  # apart: an HDF5 source may be named like a role

    def add(self, role: str, county: str, predicted: np.ndarray, truth: np.ndarray) -> None:
        for scores, counts, key in ((self.by_role, self.role_frames, role),
                                    (self.by_county, self.county_frames, county)):
            scores.setdefault(key, Scores()).add(predicted, truth)
            counts[key] = counts.get(key, 0) + 1

    def held_out(self) -> Scores:
        """Everything the model did not train on, pooled."""
        pooled = Scores()
        for role in ("validation", "unseen"):
            if role in self.by_role:
                pooled.absorb(self.by_role[role])
        return pooled


def validate_frames(frames: Sequence, bands: Sequence[str], validation: set[str], training: set[str],
                    options: dict, on_frame: Callable[[], None] | None = None) -> FrameValidation:
    """Run `segment` (SegmentOptions fields in `options`) on each frame written as a 0.6 m GeoTIFF and score
    its polygons, rasterised back, against the frame's mask. The frames share one set of model sessions."""
    from deadtree.evaluation.domain_study import write_frame_scene
    from deadtree.runtime.model_sessions import ModelSessions

    sessions = ModelSessions()
    result = FrameValidation()
    with tempfile.TemporaryDirectory(prefix="deadtree-validate-") as tmp:
        tmp = Path(tmp)
        for frame in frames:
            scene = write_frame_scene(frame.image, bands, tmp / "frame.tif")
            predicted = segment_mask(scene, tmp, bands=tuple(bands), sessions=sessions, **options)
            result.add(county_role(frame.group, validation, training), frame.group, predicted, frame.mask)
            if on_frame:
                on_frame()
    return result
