"""Pieces the validation scripts share: `segment` run on a written scene with its polygons rasterised back onto
the scene's grid, and results added under a label to a JSON file that keeps earlier runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from deadtree.evaluate import Grid, polygons_to_mask
from deadtree.pipeline import SegmentOptions, segment_scene


def segment_mask(scene: Path, tmp: Path, **options) -> np.ndarray:
    """Where `segment` (with these SegmentOptions fields) draws dead trees on `scene`, as its own grid's mask."""
    polygons = tmp / "scene.gpkg"
    segment_scene(scene, SegmentOptions(output=tmp / "scene.geojson", gpkg=polygons, **options))
    with rasterio.open(scene) as ds:
        grid = Grid.of(ds)
    return polygons_to_mask(polygons, grid)


def add_result(out: Path, what: str, label: str, record: dict) -> None:
    """Write `record` under `label` into `out`'s results, keeping the others (`what` describes a new file)."""
    results = json.loads(out.read_text()) if out.is_file() else {"what": what, "results": {}}
    results["results"][label] = record
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
