"""Polygons from a mask streamed in row strips, stitched across strip borders.

Each strip is labelled (4-connected, as GDAL polygonises; deadtree.vector.run_labels) and outlined
(deadtree.vector.trace). Components that touch a strip's last row stay open; the first row of the next strip
says which of its components continue them (vertical neighbours), and those are merged. A component is
emitted as soon as it can grow no further, so memory holds one strip plus the open components.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import shapely

from deadtree.components import labelled_maxima
from deadtree.vector.run_labels import label_mask
from deadtree.vector.trace import component_outlines


@dataclass
class Component:
    """A connected patch of dead-tree pixels, in pixel coordinates of the whole raster."""

    parts: list = field(default_factory=list)
    pixels: int = 0
    score_sum: float = 0.0
    score_max: float = 0.0

    def absorb(self, other: "Component") -> None:
        self.parts.extend(other.parts)
        self.pixels += other.pixels
        self.score_sum += other.score_sum
        self.score_max = max(self.score_max, other.score_max)

    @property
    def geometry(self):
        return self.parts[0] if len(self.parts) == 1 else shapely.union_all(self.parts)

    @property
    def score_mean(self) -> float:
        return self.score_sum / self.pixels if self.pixels else 0.0


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def add(self, key: int) -> None:
        self.parent[key] = key

    def find(self, key: int) -> int:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        return ra


def stream_components(strips: Iterable[tuple[int, np.ndarray, np.ndarray]],
                      score_scale: float = 1.0) -> Iterator[Component]:
    """Yield finished components from (first row, mask, scores) strips given top to bottom. A component's
    scores are its pixels' scores times `score_scale` (stored probability codes can be passed as they are)."""
    uf = _UnionFind()
    open_components: dict[int, Component] = {}
    previous_last_row: np.ndarray | None = None  # global ids along the previous strip's last row
    next_id = 1
    for first_row, mask, probs in strips:
        inside = np.flatnonzero(mask)
        labels = label_mask(mask, inside)
        n = labels.n
        ids = np.zeros(n + 1, dtype=np.int64)
        if n:
            ids[1:] = np.arange(next_id, next_id + n)
            next_id += n
            # Statistics over the mask's pixels only: a few percent of the strip.
            owner = labels.pixel_labels
            scores = probs.ravel()[inside].astype(np.float64) * score_scale
            counts = np.bincount(owner, minlength=n + 1)[1:]
            sums = np.bincount(owner, weights=scores, minlength=n + 1)[1:]
            maxima = labelled_maxima(scores, owner, n)
            for k, outline in enumerate(component_outlines(mask, labels, first_row, inside), start=1):
                gid = int(ids[k])
                uf.add(gid)
                open_components[gid] = Component([outline], int(counts[k - 1]), float(sums[k - 1]),
                                                 float(maxima[k - 1]))
        if previous_last_row is not None and n:
            first = ids[labels.row(0)]
            touching = (previous_last_row > 0) & (first > 0)
            for a, b in set(zip(previous_last_row[touching].tolist(), first[touching].tolist())):
                ra, rb = uf.find(a), uf.find(b)
                if ra != rb:
                    root = uf.union(ra, rb)
                    other = rb if root == ra else ra
                    open_components[root].absorb(open_components.pop(other))
        last_row = ids[labels.row(mask.shape[0] - 1)] if n else np.zeros(mask.shape[1], dtype=np.int64)
        still_open = {uf.find(g) for g in np.unique(last_row[last_row > 0]).tolist()}
        for root in [r for r in open_components if r not in still_open]:
            yield open_components.pop(root)
        previous_last_row = np.array([uf.find(g) if g else 0 for g in last_row.tolist()], dtype=np.int64) \
            if still_open else None
    yield from open_components.values()
