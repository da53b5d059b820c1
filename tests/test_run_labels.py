"""Labels found from a mask's runs must be ndimage.label's, numbering included, at every density."""
import numpy as np
import pytest
from scipy import ndimage

from deadtree.components import FOUR_CONNECTED
from deadtree.vector.run_labels import DENSE_SHARE, DenseLabels, RunLabels, label_mask


def masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 70, size=2))
    yield rng.random(shape) < rng.uniform(0.01, 0.95)  # salt and pepper: diagonal contacts everywhere
    seeds = rng.random(shape) < 0.02
    yield ndimage.binary_dilation(seeds, iterations=int(rng.integers(1, 5)))  # crown-like blobs, U shapes


def assert_like_ndimage(found, mask):
    expected, n = ndimage.label(mask, structure=FOUR_CONNECTED)
    flat = np.flatnonzero(mask)
    assert found.n == n
    assert np.array_equal(found.pixel_labels, expected.ravel()[flat])
    for r in (0, mask.shape[0] - 1, mask.shape[0] // 2):
        assert np.array_equal(found.row(r), expected[r])
    rows, cols = np.indices(mask.shape)
    assert np.array_equal(found.at(rows.ravel(), cols.ravel()), expected.ravel())


@pytest.mark.parametrize("seed", range(30))
def test_run_labels_are_ndimage_labels(seed):
    for mask in masks(seed):
        assert_like_ndimage(RunLabels(mask.shape, np.flatnonzero(mask)), mask)
        assert_like_ndimage(DenseLabels(mask, np.flatnonzero(mask)), mask)


def test_runs_that_touch_only_diagonally_stay_apart_and_a_u_joins():
    mask = np.array([[1, 0, 1, 0, 1],
                     [0, 1, 0, 0, 1],
                     [0, 1, 1, 1, 1]], bool)
    found = RunLabels(mask.shape, np.flatnonzero(mask))
    # (0,0) and (0,2) touch the run below only at corners; the U on the right joins its two arms
    assert found.n == 3
    assert found.row(0).tolist() == [1, 0, 2, 0, 3]
    assert found.row(2).tolist() == [0, 3, 3, 3, 3]


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (4, 4)])
def test_empty_and_full_masks(shape):
    for mask in (np.zeros(shape, bool), np.ones(shape, bool)):
        assert_like_ndimage(RunLabels(shape, np.flatnonzero(mask)), mask)


def test_label_mask_picks_runs_for_sparse_masks_and_the_scan_for_full_ones():
    sparse = np.zeros((100, 100), bool)
    sparse[10:13, 20:24] = True
    full = np.random.default_rng(0).random((100, 100)) < 3 * DENSE_SHARE
    assert isinstance(label_mask(sparse), RunLabels)
    assert isinstance(label_mask(full), DenseLabels)


def test_long_snakes_and_spirals_join_into_the_right_components():
    # chains of runs many rows long: the joining must not stop before every touching pair shares a root
    snake = np.zeros((60, 40), bool)
    snake[::2] = True
    for r in range(1, 60, 2):
        snake[r, -1 if (r // 2) % 2 == 0 else 0] = True
    spiral = np.zeros((41, 41), bool)
    r0, c0, r1, c1 = 0, 0, 40, 40
    while r0 <= r1 and c0 <= c1:
        spiral[r0, c0:c1 + 1] = spiral[r0:r1 + 1, c1] = True
        if r1 - r0 >= 2:
            spiral[r1, c0:c1 + 1] = True
        if c1 - c0 >= 2:
            spiral[r0 + 2:r1 + 1, c0] = True
        r0, c0, r1, c1 = r0 + 2, c0 + 2, r1 - 2, c1 - 2
    for mask in (snake, spiral, snake[::-1, ::-1]):
        assert_like_ndimage(RunLabels(mask.shape, np.flatnonzero(mask)), mask)


def test_segment_imports_no_scipy_for_a_scene_without_fill(tmp_path, toy_models):
    # scipy's import is a quarter second of every command's start; a plain scene needs none of it
    import subprocess
    import sys

    from tests.scenes import write_scene

    write_scene(tmp_path / "s.tif")
    code = ("import sys\nfrom deadtree.pipeline import SegmentOptions, segment_scene\n"
            f"segment_scene({str(tmp_path / 's.tif')!r}, SegmentOptions(output={str(tmp_path / 'o.geojson')!r}))\n"
            "print('scipy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
