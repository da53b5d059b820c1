"""Scoring a segmenter on annotated frames from another domain, with and without adapting the imagery.

Used for the west -> east study (docs/translator.md): an east-trained segmenter is scored on western frames
raw, histogram-matched to the east, and translated by an ADA-Net or CUT translator. Each frame goes through
`segment_scene` itself (written as a small GeoTIFF at 0.6 m), so the scores measure exactly what a user of
`deadtree segment --translator` gets: the same stretch, tiling, translation, blending and threshold.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from deadtree.metrics import ObjectCounts, PixelCounts
from deadtree.raster.normalise import band_percentiles
from deadtree.raster.probability import dead_mask
from deadtree.training.frames import Frame

FRAME_GSD_M = 0.6
_COLOUR = {"R": ColorInterp.red, "G": ColorInterp.green, "B": ColorInterp.blue}


def write_frame_scene(image: np.ndarray, bands: Sequence[str], path: Path) -> Path:
    """A (rows, cols, bands) uint8 frame as a georeferenced GeoTIFF the pipeline can read (its position on
    Earth is made up; only the 0.6 m pixel size matters)."""
    rows, cols, count = image.shape
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=count, dtype="uint8",
                       crs="EPSG:32610", transform=Affine(FRAME_GSD_M, 0, 500000, 0, -FRAME_GSD_M, 5000000)) as dst:
        dst.write(image.transpose(2, 0, 1))
        dst.colorinterp = [_COLOUR.get(b, ColorInterp.undefined) for b in bands]
        for i, band in enumerate(bands, start=1):
            dst.set_band_description(i, band.lower())
    return path


class HistogramMatcher:
    """Classical baseline: map each band's values so their distribution matches a reference domain's pooled
    distribution (per-band CDF matching over the 256 uint8 levels)."""

    def __init__(self, reference: Sequence[np.ndarray]):
        bands = reference[0].shape[2]
        counts = np.zeros((bands, 256))
        for image in reference:
            for b in range(bands):
                counts[b] += np.bincount(image[..., b].ravel(), minlength=256)
        self.reference_cdf = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = np.empty_like(image)
        for b in range(image.shape[2]):
            own = np.cumsum(np.bincount(image[..., b].ravel(), minlength=256)) / image[..., b].size
            lookup = np.searchsorted(self.reference_cdf[b], own, side="left").clip(0, 255).astype(np.uint8)
            out[..., b] = lookup[image[..., b]]
        return out


SWEEP_THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.05, 0.96, 0.05))


@dataclass
class ConditionScores:
    name: str
    pixel: PixelCounts
    objects: ObjectCounts
    # Pixel counts at every threshold of SWEEP_THRESHOLDS: a diagnostic of whether a condition loses the
    # information or only shifts the probabilities (choosing the threshold on these masks is not allowed for
    # the reported scores, which use the segmenter's own threshold).
    sweep: dict[float, PixelCounts] | None = None
    # (tp, fp, fn) of each frame, in frame order: what a paired comparison of two conditions resamples
    per_frame: list[tuple[int, int, int]] | None = None

    def as_dict(self) -> dict:
        record = {"condition": self.name, **{f"pixel_{k}": v for k, v in self.pixel.scores().items()},
                  **self.objects.scores()}
        if self.per_frame is not None:
            record["per_frame_counts"] = [list(c) for c in self.per_frame]
        if self.sweep:
            ious = {t: c.scores()["iou"] for t, c in self.sweep.items()}
            best = max(ious, key=ious.get)
            record.update(sweep_iou={str(t): v for t, v in ious.items()}, best_threshold=best,
                          best_threshold_iou=ious[best])
        return record


def score_frames(frames: Sequence[Frame], bands: Sequence[str], name: str, model: str,
                 translator: str | None = None, adapt: Callable[[np.ndarray], np.ndarray] | None = None,
                 workdir: Path | None = None) -> ConditionScores:
    """Pooled pixel and object scores of `model` (optionally behind `translator`, optionally on images
    changed by `adapt` first) over the frames, each run through `segment_scene` at the model's threshold."""
    from deadtree.pipeline import SegmentOptions, segment_scene

    objects = ObjectCounts()
    sweep = {t: PixelCounts() for t in SWEEP_THRESHOLDS}
    per_frame = []
    threshold = _threshold_of(model)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        for frame in frames:
            image = adapt(frame.image) if adapt else frame.image
            scene = write_frame_scene(image, bands, tmp / "frame.tif")
            options = SegmentOptions(output=tmp / "frame.geojson", probabilities=tmp / "prob.tif", model=model,
                                     translator=translator, bands=tuple(bands), precision="fp32")
            segment_scene(scene, options)
            with rasterio.open(tmp / "prob.tif") as ds:
                codes = ds.read(1)
            pred = dead_mask(codes, threshold)
            one = PixelCounts()
            one.add(pred, frame.mask)
            per_frame.append((one.tp, one.fp, one.fn))
            objects.add(pred, frame.mask)
            for t, counts in sweep.items():
                counts.add(dead_mask(codes, t), frame.mask)
    pooled = PixelCounts(*(sum(column) for column in zip(*per_frame))) if per_frame else PixelCounts()
    return ConditionScores(name, pooled, objects, sweep, per_frame)


def paired_bootstrap_iou(baseline: Sequence[Sequence[int]], other: Sequence[Sequence[int]], draws: int = 2000,
                         seed: int = 0) -> tuple[float, float, float]:
    """Pooled-IoU difference other - baseline on the same frames, with a 95% interval from resampling whole
    frames (with replacement) for both at once: how much of a difference the frame sample alone could make."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError("both conditions need (tp, fp, fn) counts of the same frames")

    def pooled_iou(counts: np.ndarray) -> np.ndarray:  # counts: (..., frames, 3)
        tp, fp, fn = counts.sum(axis=-2).T
        return tp / np.maximum(tp + fp + fn, 1)

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(draws, len(a)))
    differences = pooled_iou(b[picks]) - pooled_iou(a[picks])
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(pooled_iou(b) - pooled_iou(a)), float(low), float(high)


def _threshold_of(model: str) -> float:
    from deadtree.runtime.metadata import read_model_info
    from deadtree.runtime.registry import resolve_model

    return read_model_info(resolve_model(model, "segmenter")).threshold


def stretched(image: np.ndarray) -> np.ndarray:
    """A (rows, cols, bands) uint8 frame as the models see it: (bands, rows, cols), percentile-stretched."""
    planes = image.transpose(2, 0, 1)
    return band_percentiles(planes).apply(planes)


def translate_frame(unit: np.ndarray, translator) -> np.ndarray:
    """Run an exported translator (an OnnxModel) over a stretched frame in its own tile size, without
    overlap (enough for distribution statistics); values in and out are the 0..1 stretch units."""
    tile = translator.info.tile_size
    rows, cols = unit.shape[1:]
    padded = np.pad(unit, ((0, 0), (0, (-rows) % tile), (0, (-cols) % tile)), mode="symmetric")
    lo, hi = translator.info.input_range
    olo, ohi = translator.info.output_range
    out = np.empty_like(padded)
    for r in range(0, padded.shape[1], tile):
        for c in range(0, padded.shape[2], tile):
            x = padded[None, :, r:r + tile, c:c + tile] * (hi - lo) + lo
            out[:, r:r + tile, c:c + tile] = (translator.run(x)[0] - olo) / (ohi - olo)
    return out[:, :rows, :cols]


def sample_pixels(unit: np.ndarray, max_pixels: int = 20000, seed: int = 0) -> np.ndarray:
    """A random sample of a stretched (bands, rows, cols) frame's pixels as (n, bands)."""
    flat = unit.reshape(unit.shape[0], -1).T
    rng = np.random.default_rng(seed)
    take = rng.choice(len(flat), size=min(max_pixels, len(flat)), replace=False)
    return flat[take]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of (n, d) samples (the FID formula, here on
    stretched band values rather than network features)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def band_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over bands of the 1-D Wasserstein distance between two sets of (n, d) samples."""
    from scipy.stats import wasserstein_distance

    return float(np.mean([wasserstein_distance(a[:, i], b[:, i]) for i in range(a.shape[1])]))


def dead_tree_contrast(unit: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Per band, mean of the dead-tree pixels minus mean of the other pixels of one stretched frame, or None
    when the frame has no dead tree. A translator that keeps the content keeps this signal; one that
    paints dead crowns over with live canopy (to look like a domain with fewer of them) shrinks it. Masks are
    read here to judge a translator, never to train one."""
    if not mask.any() or mask.all():
        return None
    flat = unit.reshape(unit.shape[0], -1)
    dead = mask.ravel()
    return flat[:, dead].mean(axis=1) - flat[:, ~dead].mean(axis=1)
