import numpy as np
import pytest

from deadtree.tiling import TRIM_MULTIPLE, StripAccumulator, Tile, axis_starts, blend_window, tile_rows


@pytest.mark.parametrize("length", [1, 63, 64, 65, 100, 257, 1000])
@pytest.mark.parametrize("offset", [0, 7, 24])
def test_grid_reaches_every_pixel(length, offset):
    starts = axis_starts(length, 64, 48, offset)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[max(s, 0):max(min(s + 64, length), 0)] = True
    assert covered.all()
    assert starts == sorted(starts)


def test_unshifted_grid_stays_inside_when_it_can():
    starts = axis_starts(100, 64, 48)
    assert starts[0] == 0 and starts[-1] == 100 - 64


def test_blend_ramps_sum_to_one_where_tiles_overlap():
    w = blend_window(64, 16)
    row = w[32]  # a row through the flat middle
    assert row[16:48] == pytest.approx(1.0)
    # the falling ramp of one tile plus the rising ramp of the next (stride 48) is a partition of unity
    # (up to the small floor that keeps scene-edge pixels defined)
    assert (row[48:64] + row[0:16]) == pytest.approx(np.ones(16), abs=2e-3)
    assert w.min() > 0
    assert row[:4].max() <= 2e-3  # the outer margin, where the network lacks context, counts for next to nothing


def test_scene_edges_get_context_from_a_margin():
    rows = tile_rows(100, 100, 64, 16)
    assert rows[0][0].row == -8 and rows[-1][-1].col + 64 >= 100 + 8


@pytest.mark.parametrize("length", [40, 100, 130, 4096, 4097])
def test_cut_edge_tiles_still_cover_the_scene_and_its_margin(length):
    tile, overlap, margin = 1024, 128, 64
    full = tile_rows(length, length, tile, overlap)
    cut = tile_rows(length, length, tile, overlap, trim=TRIM_MULTIPLE)
    assert [(t.row, t.col) for r in cut for t in r] == [(t.row, t.col) for r in full for t in r]
    last = cut[-1][-1]
    assert last.col + last.width >= length + margin and last.width % TRIM_MULTIPLE == 0
    assert last.col + last.width - TRIM_MULTIPLE < length + margin  # no more than the rounding beyond
    assert all(t.width == tile for r in cut for t in r[:-1]) and all(t.height == tile for t in cut[0][:-1])
    assert sum(t.height * t.width for r in cut for t in r) <= sum(t.size ** 2 for r in full for t in r)


def test_accumulator_reproduces_a_constant_field_exactly():
    h, w, tile, overlap = 150, 130, 64, 16
    acc = StripAccumulator(h, w, tile)
    out = np.full((h, w), np.nan, np.float32)
    weights = blend_window(tile, overlap)
    field = np.random.default_rng(0).random((h, w)).astype(np.float32)
    for row_tiles in tile_rows(h, w, tile, overlap, offset=10, trim=16):
        flushed = acc.flush_until(row_tiles[0].row)
        if flushed:
            r, values, _ = flushed
            out[r:r + len(values)] = values
        for t in row_tiles:
            patch = np.zeros((t.height, t.width), np.float32)
            r0, c0 = max(t.row, 0), max(t.col, 0)
            r1, c1 = min(t.row + t.height, h), min(t.col + t.width, w)
            patch[r0 - t.row:r1 - t.row, c0 - t.col:c1 - t.col] = field[r0:r1, c0:c1]
            valid = np.zeros((t.height, t.width), bool)
            valid[r0 - t.row:r1 - t.row, c0 - t.col:c1 - t.col] = True
            acc.add(t, patch, weights, valid)
    r, values, valid = acc.flush_until(h)
    out[r:] = values
    assert valid.all()
    # every tile predicts the same value for a pixel, so blending must return it unchanged
    np.testing.assert_allclose(out, field, rtol=1e-5, atol=1e-6)


def test_accumulator_memory_is_one_tile_high():
    acc = StripAccumulator(100_000, 500, 64)
    assert acc.sum.shape == (64, 500)


def test_chunked_flush_hands_out_the_same_rows_within_a_budget():
    tile, width = 32, 50
    whole, chunked = StripAccumulator(100, width, tile), StripAccumulator(100, width, tile)
    weights = np.ones((tile, tile), dtype=np.float32)
    probs = np.random.default_rng(0).random((tile, tile)).astype(np.float32)
    for acc in (whole, chunked):
        acc.add(Tile(0, 0, tile), probs, weights, np.ones((tile, tile), bool))
    first, values, valid = whole.flush_until(24)
    chunks = list(chunked.flush_chunks(24, max_rows=10))
    assert [c[0] for c in chunks] == [0, 10, 20] and [len(c[1]) for c in chunks] == [10, 10, 4]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), values)
    np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), valid)
    assert whole.top == chunked.top == 24
    np.testing.assert_array_equal(whole.sum, chunked.sum)


def test_reused_chunks_are_the_same_rows_when_each_is_used_before_the_next():
    tile, width = 32, 50
    fresh, reused = StripAccumulator(100, width, tile), StripAccumulator(100, width, tile)
    rng = np.random.default_rng(1)
    probs, weights = rng.random((tile, tile)).astype(np.float32), blend_window(tile, 8)
    valid = rng.random((tile, tile)) < 0.9
    for acc in (fresh, reused):
        acc.add(Tile(0, 0, tile), probs, weights, valid)
        acc.add(Tile(0, 18, tile), probs[::-1], weights, np.ones((tile, tile), bool))
    expected = [(row, v.copy(), ok.copy()) for row, v, ok in fresh.flush_chunks(tile, max_rows=10)]
    got, arrays = [], set()
    for row, values, ok in reused.flush_chunks(tile, max_rows=10, reuse=True):
        got.append((row, values.copy(), ok.copy()))
        arrays.add(values.__array_interface__["data"][0])
    assert len(arrays) == 1  # one buffer throughout: no fresh memory per chunk
    for (row, v, ok), (row2, v2, ok2) in zip(expected, got, strict=True):
        assert row == row2
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_array_equal(ok, ok2)


def test_batches_hold_one_shape_and_let_empty_tiles_ride_along():
    from deadtree.tiling import batches_by_shape

    full, cut = (64, 64), (64, 32)
    items = [full, full, None, full, cut, None, cut, full]
    batches = list(batches_by_shape(items, lambda shape: shape, 2))
    assert [item for batch in batches for item in batch] == items  # nothing lost, order kept
    assert batches == [[full, full], [None, full], [cut, None, cut], [full]]
    for batch in batches:  # each call takes at most two tiles, all of one shape
        shapes = {s for s in batch if s is not None}
        assert len(shapes) <= 1 and sum(s is not None for s in batch) <= 2


def test_a_long_run_of_empty_tiles_streams_instead_of_piling_up():
    from deadtree.tiling import batches_by_shape

    handed = []

    def items():  # a nodata collar of 10,000 tiles, then one tile with data
        for _ in range(10_000):
            handed.append(None)
            yield None
        yield (64, 64)

    stream = batches_by_shape(items(), lambda shape: shape, 4)
    first = next(stream)
    assert first == [None] * 4 and len(handed) == 4  # handed on at once, not held until the collar ends
    assert max(len(batch) for batch in stream) <= 5


def test_rows_no_valid_tile_reached_come_out_as_zero():
    tile = 16
    acc = StripAccumulator(tile, tile, tile)
    valid = np.ones((tile, tile), bool)
    valid[:, :5] = False
    acc.add(Tile(0, 0, tile), np.full((tile, tile), 0.7, np.float32), blend_window(tile, 4), valid)
    _, values, ok = acc.flush_until(tile)
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values[:, :5], 0)
    np.testing.assert_allclose(values[:, 5:], 0.7, rtol=1e-6)
    np.testing.assert_array_equal(ok, valid)


@pytest.mark.parametrize("seed", range(30))
def test_mirroring_in_place_equals_numpys_symmetric_pad(seed):
    from deadtree.tiling import mirror_into_margins

    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 12, size=2)
    pads = tuple(tuple(int(p) for p in rng.integers(0, 15, size=2)) for _ in range(2))  # often wider than the data
    inner = rng.integers(0, 255, (3, rows, cols)).astype(np.uint8)
    expected = np.pad(inner, ((0, 0), *pads), mode="symmetric")
    tile = np.zeros_like(expected)
    (top, _), (left, _) = pads
    tile[:, top:top + rows, left:left + cols] = inner
    mirror_into_margins(tile, pads)
    np.testing.assert_array_equal(tile, expected)


def blended(height, width, tile, overlap, offset, trim, solo, holes):
    """Every tile of the grid through the accumulator, with the pipeline's windows; the finished rows."""
    rng = np.random.default_rng(tile + offset)
    weights = blend_window(tile, overlap)
    acc = StripAccumulator(height, width, tile, solo=solo)
    out = np.zeros((height, width), np.float32)
    for row in tile_rows(height, width, tile, overlap, offset, trim=trim):
        for t in row:
            for first, values, valid in acc.flush_chunks(t.row, 7):
                out[first:first + len(values)] = np.where(valid, values, -1)
            valid = np.ones((t.height, t.width), bool)
            if holes and rng.random() < 0.5:
                valid[rng.integers(t.height):, :rng.integers(t.width)] = False
            acc.add(t, rng.random((t.height, t.width), dtype=np.float32), weights, valid)
    for first, values, valid in acc.flush_chunks(height, 7):
        out[first:first + len(values)] = np.where(valid, values, -1)
    return out


@pytest.mark.parametrize("offset,trim,holes", [(0, None, False), (0, TRIM_MULTIPLE, False), (37, TRIM_MULTIPLE, True),
                                               (5, None, True)])
def test_tiles_written_as_they_are_where_they_alone_cover_blend_to_the_same_numbers(offset, trim, holes):
    # the tile's own rectangle is copied, the frame weighted: bit for bit what weighting everything gives
    kw = dict(height=300, width=410, tile=96, overlap=24, offset=offset, trim=trim, holes=holes)
    assert np.array_equal(blended(solo=24, **kw), blended(solo=None, **kw))
