"""Tiles from the scene to probabilities: read (mirrored past the grid's edge), scaled, and run through the
translator and the segmenter (or an ensemble), in batches."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

import numpy as np

from deadtree.buffers import BufferPool
from deadtree.raster.normalise import BandStretch
from deadtree.raster.reader import WindowReader
from deadtree.raster.validity import all_valid
from deadtree.runtime.session import OnnxModel
from deadtree.tiling import Tile, batches_by_shape, mirror_into_margins
from deadtree.tta import augmented


@dataclass
class TileWork:
    tile: Tile
    valid: np.ndarray
    scaled: np.ndarray | None = None  # None: nothing valid, never sent to the model
    probs: np.ndarray | None = None


def read_batches(reader: WindowReader, grid, tiles: list[Tile], predictor: TilePredictor):
    """Tiles in grid order, read and scaled, in batches of `predictor.batch_size` tiles for the model (tiles
    without valid pixels ride along unscaled, so that progress and blending keep their order)."""
    def read(t: Tile) -> TileWork:
        pixels, valid = read_tile(reader, grid, t, predictor.buffers)
        work = TileWork(t, valid)
        if valid.any():
            work.scaled = predictor.scale(pixels, valid)
        predictor.buffers.give_back(pixels)
        return work

    yield from batches_by_shape((read(t) for t in tiles),
                                lambda work: None if work.scaled is None else work.valid.shape, predictor.batch_size)


def read_tile(reader: WindowReader, grid, t: Tile, buffers: BufferPool) -> tuple[np.ndarray, np.ndarray]:
    """Read one tile into an array from `buffers`. Parts outside the grid are mirrored in, validity too: the
    model then sees scene texture there rather than flat fill (which would make answers depend on where the
    tile grid falls), and the accumulator drops everything outside the grid anyway."""
    r0, c0 = max(t.row, 0), max(t.col, 0)
    r1, c1 = min(t.row + t.height, grid.height), min(t.col + t.width, grid.width)
    pads = ((r0 - t.row, t.row + t.height - r1), (c0 - t.col, t.col + t.width - c1))
    pixels = buffers.take((len(reader.indexes), t.height, t.width), reader.dtype)
    inside = (slice(None), slice(pads[0][0], t.height - pads[0][1]), slice(pads[1][0], t.width - pads[1][1]))
    _, valid = reader.read(r0, c0, r1 - r0, c1 - c0, out=pixels[inside])
    if any(p for pair in pads for p in pair):
        mirror_into_margins(pixels, pads)
        valid = np.pad(valid, pads, mode="symmetric") if not valid.all() else all_valid(pixels.shape[1:])
    return pixels, valid


class TilePredictor:
    """Scales tiles, runs the optional translator and the segmenter in batches, returns probabilities."""

    def __init__(self, segmenter: OnnxModel, translator: OnnxModel | None, stretch: BandStretch,
                 neutral: np.ndarray, batch_size: int, flips: bool = False, members: list[OnnxModel] | None = None,
                 read_bands: tuple[str, ...] | None = None, scales: tuple[float, ...] = (),
                 before_call: Callable[[], None] | None = None):
        """before_call: called before each batch (the caller's stop check: it raises to stop the run)."""
        self.before_call = before_call
        self.segmenter = segmenter
        read_bands = read_bands or segmenter.info.bands
        # Each segmenter with the read bands it takes, in its order (None: all of them, as read).
        self.ensemble = [(m, _pick(read_bands, m.info.bands)) for m in [segmenter, *(members or [])]]
        self.flips = flips
        self.scales = scales
        self.translator = translator
        self.stretch = stretch
        self.neutral = neutral.astype(np.float32)
        self.batch_size = max(1, batch_size)
        # Tile-sized arrays in rotation: raw tiles go back once scaled, scaled tiles once the model has run.
        self.buffers = BufferPool()
        if translator:
            self.to_segmenter = [translator.info.bands.index(b) for b in segmenter.info.bands]

    def predict(self, batch: list[TileWork]) -> list[TileWork]:
        """Fill in the probabilities of the batch's tiles that have valid pixels (at most `batch_size` of them:
        read_batches cuts the batches to that)."""
        if self.before_call is not None:
            self.before_call()
        work = [w for w in batch if w.scaled is not None]
        if work:
            # one tile (the usual batch at 1024 px) goes in as a view: no copy of ~20 MB
            batch_in = work[0].scaled[None] if len(work) == 1 else np.stack([w.scaled for w in work])
            probs = self._run(batch_in)[:, 0]
            for w, p in zip(work, probs):
                self.buffers.give_back(w.scaled)
                w.probs, w.scaled = p, None
        return batch

    def scale(self, tile: np.ndarray, valid: np.ndarray) -> np.ndarray:
        scaled = self.stretch.apply(tile, out=self.buffers.take(tile.shape, np.float32))
        if not valid.all():
            scaled[:, ~valid] = self.neutral[:, None]
        return scaled

    def _run(self, unit: np.ndarray) -> np.ndarray:
        """`unit` is the percentile-stretched image (0..1 between the stretch points)."""
        if self.translator:
            translated = self.translator.run(_from_unit(unit, self.translator.info.input_range))
            olo, ohi = self.translator.info.output_range
            unit = ((translated - olo) / (ohi - olo))[:, self.to_segmenter]
            return self._segment(self.segmenter, unit)
        probs = None
        for model, pick in self.ensemble:
            answer = self._segment(model, unit if pick is None else unit[:, pick])
            probs = answer if probs is None else probs + answer
        return probs / len(self.ensemble) if len(self.ensemble) > 1 else probs

    def _segment(self, model: OnnxModel, unit: np.ndarray) -> np.ndarray:
        return augmented(model.run, _from_unit(unit, model.info.input_range), self.flips, self.scales)


def _pick(read_bands: tuple[str, ...], wanted: tuple[str, ...]) -> list[int] | None:
    indices = [read_bands.index(b) for b in wanted]
    return None if indices == list(range(len(read_bands))) else indices


def _from_unit(unit: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Stretch units (0..1) mapped onto a model's input range; no copies for the usual 0..1 (two arrays of a
    batch's size otherwise, for nothing)."""
    lo, hi = value_range
    return unit if (lo, hi) == (0.0, 1.0) else unit * (hi - lo) + lo
