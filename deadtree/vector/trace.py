"""Pixel-edge outlines of labelled mask components, built from the mask's boundary edges alone.

GDAL's polygoniser (rasterio.features.shapes) scans every pixel of a strip, about 20 ns each even where the
strip is empty, and that scan was the largest share of `segment`'s own work. Dead crowns cover a few percent of
a scene, so the outlines are built here from the mask's pixels only: each mask pixel contributes those of its
four sides that face a pixel outside the mask; sides in line on neighbouring pixels are joined into one segment;
GEOS then closes the segments into faces (shapely.polygonize), and each ring is started and turned as GDAL
writes it. The outlines are GDAL's 4-connected polygons vertex for vertex, holes included (tests/test_trace.py
compares their WKT).
"""
from __future__ import annotations

import numpy as np
import shapely


def component_outlines(mask: np.ndarray, labels, row_offset: int = 0, flat_pixels: np.ndarray | None = None) -> list:
    """Outline of each of the components 1..n of `labels` (deadtree.vector.run_labels.label_mask of `mask`), as
    shapely Polygons in pixel coordinates (x = column, y = row + row_offset); index k holds component k + 1.
    `flat_pixels`, the mask's np.flatnonzero where the caller has it already, spares a pass over the strip."""
    outlines: list = [None] * labels.n
    if labels.n == 0:
        return outlines
    mask = np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(mask) if flat_pixels is None else flat_pixels
    rows, cols = np.divmod(flat, mask.shape[1])
    segments = np.concatenate([
        _joined_sides(rows, cols, _outside(mask, rows - 1, cols), along_rows=True, offset=0),   # tops
        _joined_sides(rows, cols, _outside(mask, rows + 1, cols), along_rows=True, offset=1),   # bottoms
        _joined_sides(rows, cols, _outside(mask, rows, cols - 1), along_rows=False, offset=0),  # left sides
        _joined_sides(rows, cols, _outside(mask, rows, cols + 1), along_rows=False, offset=1),  # right sides
    ])
    faces = shapely.get_parts(shapely.polygonize(shapely.linestrings(segments)))
    owners = _face_owners(faces, labels)
    mine = owners > 0  # faces with owner 0 are holes: background enclosed by a component
    for face, owner in zip(_in_gdal_order(faces[mine], row_offset), owners[mine]):
        outlines[owner - 1] = face
    return outlines


def _outside(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each (row, col) lies outside the mask, beyond the array's border included."""
    height, width = mask.shape
    beyond = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    result = beyond.copy()
    inside = ~beyond
    result[inside] = ~mask[rows[inside], cols[inside]]
    return result


def _joined_sides(rows: np.ndarray, cols: np.ndarray, facing_out: np.ndarray, along_rows: bool,
                  offset: int) -> np.ndarray:
    """Segments ((x0, y0), (x1, y1)) for the pixel sides facing out of the mask on one side (top, bottom, left or
    right), sides of adjacent pixels in line joined into one. Joining never hides a junction from GEOS: where two
    such sides meet, no other boundary edge touches the point (the pixels on both sides of the line agree)."""
    r, c = rows[facing_out], cols[facing_out]
    if along_rows:  # tops / bottoms: horizontal runs, the mask's pixels come in row-major order
        line, pos = r, c
    else:  # left / right sides: vertical runs, ordered column by column
        order = np.lexsort((r, c))
        line, pos = c[order], r[order]
    starts = np.ones(len(pos), dtype=bool)
    starts[1:] = (line[1:] != line[:-1]) | (pos[1:] != pos[:-1] + 1)
    first = np.flatnonzero(starts)
    last = np.append(first[1:], len(pos)) - 1
    fixed, begin, end = line[first] + offset, pos[first], pos[last] + 1
    if along_rows:
        start_xy, end_xy = np.stack([begin, fixed], 1), np.stack([end, fixed], 1)
    else:
        start_xy, end_xy = np.stack([fixed, begin], 1), np.stack([fixed, end], 1)
    return np.stack([start_xy, end_xy], 1).astype(np.float64)


def _face_owners(faces: np.ndarray, labels) -> np.ndarray:
    """The component label of each face (0 for a hole), read at the centre of the pixel just inside the first
    edge of the face's shell. A ring whose signed area is positive (shapely's is_ccw, taken on the coordinates as
    numbers, whichever way the rows run on screen) has its interior to the left of its direction of travel."""
    shells = shapely.get_exterior_ring(faces)
    first = shapely.get_coordinates(shapely.get_point(shells, 0))
    second = shapely.get_coordinates(shapely.get_point(shells, 1))
    direction = np.sign(second - first)  # edges are axis-parallel: a unit step along the edge
    left = np.stack([-direction[:, 1], direction[:, 0]], 1)  # (-dy, dx): left of travel, by the numbers
    inward = np.where(shapely.is_ccw(shells)[:, None], left, -left)
    centre = first + 0.5 * direction + 0.5 * inward
    cols, rows = np.floor(centre).astype(np.int64).T
    return labels.at(rows, cols)


def _in_gdal_order(faces: np.ndarray, row_offset: int) -> np.ndarray:
    """The faces rebuilt with their rings as GDAL writes them, moved down by `row_offset`: each ring starting
    at its top-left vertex (smallest row, then column), shells clockwise and holes counter-clockwise (by the
    numbers, rows pointing down), holes in the order of their first vertex. The simplification that follows
    depends on where a ring starts, so this keeps the output what GDAL's tracing gave, vertex for vertex."""
    count = len(faces)
    holes_each = shapely.get_num_interior_rings(faces)
    hole_owner = np.repeat(np.arange(count), holes_each)
    hole_number = np.arange(len(hole_owner)) - np.repeat(np.cumsum(holes_each) - holes_each, holes_each)
    shells, shell_first = _rings_in_order(shapely.get_exterior_ring(faces), False, row_offset)
    holes, hole_first = _rings_in_order(shapely.get_interior_ring(faces[hole_owner], hole_number), True,
                                        row_offset)
    rings = np.concatenate([shells, holes])
    polygon = np.concatenate([np.arange(count), hole_owner])
    first = np.concatenate([shell_first, hole_first])
    is_hole = np.arange(len(rings)) >= count
    order = np.lexsort((first[:, 0], first[:, 1], is_hole, polygon))  # per polygon: shell, then holes
    return shapely.polygons(rings[order], indices=polygon[order])


def _rings_in_order(rings: np.ndarray, counter_clockwise: bool, row_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Rings turned to the wanted orientation, rolled to start at their top-left vertex and moved down by
    `row_offset`, with that first vertex."""
    if len(rings) == 0:
        return rings, np.zeros((0, 2))
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    open_end = np.flatnonzero(np.diff(ring, append=len(rings)))  # each ring's closing point: dropped
    keep = np.ones(len(coords), dtype=bool)
    keep[open_end] = False
    coords, ring = coords[keep], ring[keep]
    sizes = np.bincount(ring, minlength=len(rings))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    position = np.arange(len(coords))
    following = position + 1
    following[ends - 1] = starts
    x, y = coords[:, 0], coords[:, 1]
    twice_area = np.add.reduceat(x * y[following] - x[following] * y, starts)
    turn = (twice_area > 0) != counter_clockwise
    coords = coords[np.where(turn[ring], starts[ring] + ends[ring] - 1 - position, position)]
    top_left = np.lexsort((coords[:, 0], coords[:, 1], ring))[starts]  # per ring: smallest row, then column
    shift = (top_left - starts)[ring]
    coords = coords[starts[ring] + (position - starts[ring] + shift) % sizes[ring]]
    coords[:, 1] += row_offset
    return shapely.linearrings(coords, indices=ring), coords[starts]
