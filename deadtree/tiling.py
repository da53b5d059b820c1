"""Tile grids, blending windows and the streaming accumulator that turns overlapping tiles into finished rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from deadtree.buffers import Scratch
from deadtree.errors import InputError

WEIGHT_FLOOR = 1e-3  # keeps pixels seen by one tile only (scene edges) defined after normalisation


@dataclass(frozen=True)
class Tile:
    row: int  # top-left in grid pixels; may be negative for shifted grids (the part outside is padded)
    col: int
    size: int  # the model's tile size
    rows: int | None = None  # the tile's own extent where it is cut short at the grid's far edges
    cols: int | None = None

    @property
    def height(self) -> int:
        return self.rows or self.size

    @property
    def width(self) -> int:
        return self.cols or self.size


TRIM_MULTIPLE = 32  # a cut tile's sides stay multiples of this: U-Nets halve the image up to five times
MAX_TILE = 2048  # a 2048 px tile already holds about 2 GB of activations; larger ones cost memory, not time


def check_tile(tile: int | None, overlap: int | None, names: tuple[str, str] = ("--tile-size", "--overlap")) -> None:
    """A tile size the networks take (sides off their stride would misalign the U-Nets' skip connections) and
    an overlap that leaves each tile something of its own; None is not checked."""
    if tile is not None and not (tile % TRIM_MULTIPLE == 0 and 2 * TRIM_MULTIPLE <= tile <= MAX_TILE):
        raise InputError(f"{names[0]} must be a multiple of {TRIM_MULTIPLE} from {2 * TRIM_MULTIPLE} to {MAX_TILE} px")
    if overlap is not None and overlap < 0:
        raise InputError(f"{names[1]} cannot be negative")
    if tile is not None and overlap is not None and overlap >= tile:
        raise InputError(f"{names[1]} must be smaller than the tile size ({tile})")


def tile_extent(start: int, length: int, tile: int, margin: int, multiple: int | None) -> int:
    """How far a tile starting at `start` needs to reach: the full tile, or (with `multiple`) only as far as
    the grid's far edge plus its margin, rounded up to `multiple`. Without cutting, the last tile of a row
    overhangs the scene by up to a tile's width of mirrored pixels that the model computes for nothing
    (448 of 1024 columns on a 4096 px scene; 724 on a 300 px one)."""
    if not multiple:
        return tile
    needed = length + margin - start
    return min(tile, -(-needed // multiple) * multiple)


def axis_starts(length: int, tile: int, stride: int, offset: int = 0, margin: int = 0) -> list[int]:
    """Tile starts along one axis that reach every pixel.

    The grid runs over the scene extended by `margin` on both sides (mirrored in when read), so that no scene
    pixel sits at a tile's border, where a network sees no context. With offset and margin 0 the last tile
    is pulled inside the scene instead of overhanging it.
    """
    starts = []
    start = -margin - offset
    while True:
        starts.append(start)
        if start + tile >= length + margin:
            break
        start += stride
    if offset == 0 and margin == 0 and length >= tile and starts[-1] + tile > length:
        starts[-1] = length - tile
    return starts


def tile_rows(height: int, width: int, tile: int, overlap: int, offset: int = 0,
              margin: int | None = None, trim: int | None = None) -> list[list[Tile]]:
    """The grid as rows of tiles, top to bottom: the accumulator finishes image rows as tile rows pass.

    `margin` defaults to half the overlap: scene edges get the same context as tile seams. With `trim` (a
    multiple, e.g. TRIM_MULTIPLE) the last tiles of each axis are cut short past the margin (tile_extent)."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be between 0 and the tile size ({tile}), got {overlap}")
    margin = overlap // 2 if margin is None else margin
    stride = tile - overlap
    cols = [(c, tile_extent(c, width, tile, margin, trim)) for c in axis_starts(width, tile, stride, offset, margin)]
    rows = [(r, tile_extent(r, height, tile, margin, trim)) for r in axis_starts(height, tile, stride, offset, margin)]
    return [[Tile(r, c, tile, h if h < tile else None, w if w < tile else None) for c, w in cols] for r, h in rows]


def blend_window(tile: int, overlap: int, margin: int | None = None) -> np.ndarray:
    """Weights for blending a tile: ~zero over an outer margin, a sin^2 ramp across the overlap, flat inside.

    A network sees less context near a tile's border (zero padding inside the convolutions), so predictions
    there depend on where the grid falls; giving the margin (a quarter of the overlap by default) next to no
    weight keeps only the well-supported predictions where neighbouring tiles overlap.
    """
    margin = overlap // 4 if margin is None else margin
    ramp = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        width = overlap - 2 * margin  # rising and falling ramps of neighbours then sum to one
        x = (np.arange(overlap, dtype=np.float32) - margin + 0.5) / max(width, 1)
        rising = np.sin(0.5 * np.pi * np.clip(x, 0, 1)) ** 2
        ramp[:overlap] = rising
        ramp[-overlap:] = np.minimum(ramp[-overlap:], rising[::-1])
    window = np.outer(ramp, ramp)
    return np.maximum(window, WEIGHT_FLOOR)


class StripAccumulator:
    """Weighted sum of tile predictions over the strip of rows still open; finished rows are handed out.

    Memory is (tile rows) x (scene width), whatever the scene height.
    """

    def __init__(self, height: int, width: int, tile: int, solo: int | None = None):
        """`solo`: the caller's promise that the pixels [solo, tile - solo) of a tile, in both axes, are covered
        by no other tile and weighted one there (tiles stepped by tile - overlap, solo = overlap, weights from
        blend_window). Their blend is then the tile's own value, written as it is instead of weighted, summed
        and divided: the same numbers (x * 1 + 0 and x / 1 are exact) for less memory traffic (2.0 against 2.4
        ms for a 1024 px tile with 128 px overlap)."""
        self.height, self.width, self.tile = height, width, tile
        self.solo = solo
        self.top = 0  # grid row of the buffer's first row
        self.sum = np.zeros((tile, width), dtype=np.float32)
        self.weight = np.zeros((tile, width), dtype=np.float32)
        self.valid = np.zeros((tile, width), dtype=bool)
        self._scratch = np.empty((tile, tile), dtype=np.float32)
        self._out = Scratch()

    def add(self, tile: Tile, values: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> None:
        r0, c0 = max(tile.row, 0), max(tile.col, 0)
        r1, c1 = min(tile.row + tile.height, self.height), min(tile.col + tile.width, self.width)
        if r0 >= r1 or c0 >= c1:
            return
        if r0 < self.top or r1 - self.top > self.tile:
            raise RuntimeError("tiles must arrive row by row, after flush_until() of their first row")
        everywhere = bool(valid[r0 - tile.row:r1 - tile.row, c0 - tile.col:c1 - tile.col].all())
        if self.solo is None or not everywhere:
            self._blend(tile, values, weight, valid, (r0, r1, c0, c1), everywhere)
            return
        # the tile's own rectangle, then the frame around it (top, bottom, left and right bands)
        i0, i1 = max(r0, tile.row + self.solo), min(r1, tile.row + self.tile - self.solo)
        j0, j1 = max(c0, tile.col + self.solo), min(c1, tile.col + self.tile - self.solo)
        if i0 >= i1 or j0 >= j1:
            self._blend(tile, values, weight, valid, (r0, r1, c0, c1), everywhere)
            return
        own = (slice(i0 - self.top, i1 - self.top), slice(j0, j1))
        self.sum[own] = values[i0 - tile.row:i1 - tile.row, j0 - tile.col:j1 - tile.col]
        self.weight[own] = 1
        self.valid[own] = True
        for part in ((r0, i0, c0, c1), (i1, r1, c0, c1), (i0, i1, c0, j0), (i0, i1, j1, c1)):
            if part[0] < part[1] and part[2] < part[3]:
                self._blend(tile, values, weight, valid, part, everywhere)

    def _blend(self, tile: Tile, values: np.ndarray, weight: np.ndarray, valid: np.ndarray,
               part: tuple[int, int, int, int], everywhere: bool) -> None:
        """Weighted addition of the tile's grid rows [r0, r1) and columns [c0, c1)."""
        r0, r1, c0, c1 = part
        src = (slice(r0 - tile.row, r1 - tile.row), slice(c0 - tile.col, c1 - tile.col))
        dst = (slice(r0 - self.top, r1 - self.top), slice(c0, c1))
        ok = valid[src]
        # Most tiles are valid throughout: then the blend weights need no masking, one temporary fewer.
        w = weight[src] if everywhere else weight[src] * ok
        scratch = self._scratch[:r1 - r0, :c1 - c0]  # reused: a fresh tile-sized temporary per tile costs more
        self.sum[dst] += np.multiply(values[src], w, out=scratch)
        self.weight[dst] += w
        if everywhere:
            self.valid[dst] = True
        else:
            self.valid[dst] |= ok

    def flush_until(self, row: int):
        """Hand out rows [top, row) as (first row, blended values, valid); they receive no more tiles."""
        chunks = list(self.flush_chunks(row))  # one chunk, or none; taking it all moves the buffer on
        return chunks[0] if chunks else None

    def flush_chunks(self, row: int, max_rows: int | None = None, reuse: bool = False):
        """Like flush_until, in chunks of at most `max_rows` rows, so that what is handed out at a time is
        bounded by a pixel budget rather than by the tile height times the scene width. Consume it fully: the
        buffer moves on once the last chunk has been taken. With `reuse`, each chunk's arrays are overwritten
        by the next one's (deadtree.buffers.Scratch): for a consumer done with a chunk before taking the next."""
        row = min(max(row, self.top), self.height)
        n = row - self.top
        if n <= 0:
            return
        step = max_rows or n
        for start in range(0, n, step):
            stop = min(start + step, n)
            # Where no valid tile reached a pixel both its weight and its sum are zero: a tiny divisor gives 0
            # there, with two passes instead of a masked division into a zeroed array.
            shape = (stop - start, self.width)
            values = np.maximum(self.weight[start:stop], np.float32(1e-30),
                                out=self._out.get("values", shape, np.float32) if reuse else None)
            np.divide(self.sum[start:stop], values, out=values)
            valid = self._out.get("valid", shape, bool) if reuse else np.empty(shape, bool)
            np.copyto(valid, self.valid[start:stop])
            yield self.top + start, values, valid
        for buf in (self.sum, self.weight, self.valid):
            if n < self.tile:
                buf[:-n] = buf[n:]  # numpy copies overlapping rows as if through a temporary
            buf[-n:] = 0
        self.top = row


Item = TypeVar("Item")


def batches_by_shape(items: Iterable[Item], shape_of: Callable[[Item], tuple | None],
                     size: int) -> Iterator[list[Item]]:
    """Consecutive items grouped for model calls: at most `size` items that need the model, all of one shape
    (a cut edge tile starts a call of its own); items whose shape is None need no model and ride along in
    order, so that progress and blending keep the grid's order. At most `size` of those ride in one batch: a
    long run of them (a wide nodata collar) streams on in batches of its own instead of piling up until the
    next item that needs the model."""
    batch: list[Item] = []
    counted, shape = 0, None
    for item in items:
        this = shape_of(item)
        if this is not None:
            if counted and this != shape:
                yield batch
                batch, counted = [], 0
            counted, shape = counted + 1, this
        batch.append(item)
        if counted >= size or len(batch) - counted >= size:
            yield batch
            batch, counted = [], 0
    if batch:
        yield batch


def mirror_into_margins(a: np.ndarray, pads) -> None:
    """np.pad(mode="symmetric") of a's inner part into its own margins, in place: the tile is read straight
    into its final array. `pads` are ((top, bottom), (left, right)) for the last two axes."""
    (top, bottom), (left, right) = pads
    rows, cols = a.shape[-2] - top - bottom, a.shape[-1] - left - right
    if max(top, bottom) > rows or max(left, right) > cols:  # wider than the data: reflect repeatedly
        inner = a[..., top:top + rows, left:left + cols].copy()
        a[...] = np.pad(inner, ((0, 0),) * (a.ndim - 2) + tuple(pads), mode="symmetric")
        return
    middle = slice(left, left + cols)
    if top:
        a[..., :top, middle] = a[..., top:2 * top, middle][..., ::-1, :]
    if bottom:
        end = top + rows
        a[..., end:, middle] = a[..., end - bottom:end, middle][..., ::-1, :]
    if left:
        a[..., :left] = a[..., left:2 * left][..., ::-1]
    if right:
        end = left + cols
        a[..., end:] = a[..., end - right:end][..., ::-1]
