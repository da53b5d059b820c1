"""The false-alarm figure: dead-tree polygons that `segment` draws on scenes known to hold none.

Towns and farmland hold almost no standing dead trees, so every polygon there is (nearly always) a false
alarm. Two numbers describe it: polygons per square kilometre of scene, and the share of the scene's area
they cover. Both are pooled over the scenes: the sum of polygons (or their area) over the sum of scene areas.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import rasterio


@dataclass
class FalseAlarms:
    scenes: int = 0
    scene_area_m2: float = 0.0
    polygons: int = 0
    polygon_area_m2: float = 0.0

    def add(self, scene_area_m2: float, polygons: int, polygon_area_m2: float) -> None:
        self.scenes += 1
        self.scene_area_m2 += scene_area_m2
        self.polygons += polygons
        self.polygon_area_m2 += polygon_area_m2

    @property
    def per_km2(self) -> float:
        return self.polygons / (self.scene_area_m2 / 1e6) if self.scene_area_m2 else 0.0

    @property
    def area_share(self) -> float:
        return self.polygon_area_m2 / self.scene_area_m2 if self.scene_area_m2 else 0.0

    def summary(self) -> dict:
        return {**asdict(self), "polygons_per_km2": round(self.per_km2, 2), "area_share": round(self.area_share, 6)}


def scene_area_m2(path: str | Path) -> float:
    """The ground a scene covers: its pixels times the area of one (in its CRS's units, metres for UTM)."""
    with rasterio.open(path) as scene:
        return scene.width * scene.height * abs(scene.transform.a * scene.transform.e - scene.transform.b
                                                * scene.transform.d)


def false_alarms(scenes: Iterable[str | Path], on_scene: Callable[[Path], None] | None = None,
                 **options) -> FalseAlarms:
    """Run `segment` on each scene with `options` (SegmentOptions fields; outputs go to a temporary folder)
    and pool what it draws."""
    from deadtree.pipeline import SegmentOptions, segment_scene

    pooled = FalseAlarms()
    with tempfile.TemporaryDirectory() as tmp:
        for path in map(Path, scenes):
            result = segment_scene(path, SegmentOptions(output=Path(tmp) / f"{path.stem}.geojson", **options))
            pooled.add(scene_area_m2(path), result.polygons, result.area_m2)
            if on_scene is not None:
                on_scene(path)
    return pooled


def record_false_alarms(model_path: str | Path, pooled: FalseAlarms, where: str, precision: str,
                        command: str) -> dict:
    """Keep the figure with the model: in its metadata (`extra.false_alarms`, shown by `deadtree models`) and
    in its card (models/NAME.md beside the file), replacing an earlier one."""
    import dataclasses

    from deadtree.runtime.metadata import read_model_info, rewrite_model_info
    from deadtree.training.model_card import add_false_alarms_to_card

    model_path = Path(model_path)
    figures = {**pooled.summary(), "where": where, "precision": precision, "command": command}
    info = read_model_info(model_path)
    rewrite_model_info(model_path, dataclasses.replace(info, extra={**info.extra, "false_alarms": figures}))
    card = model_path.with_suffix(".md")
    if card.is_file():
        add_false_alarms_to_card(card, figures)
    return figures
