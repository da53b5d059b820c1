"""Stored probability codes and the dead mask read from them, with and without reused arrays."""
import numpy as np
import pytest

from deadtree.raster.probability import NODATA, PROB_SCALE, dead_mask, quantise, threshold_code


@pytest.mark.parametrize("threshold", [0.001, 0.2, 0.5, 0.55, 0.99, 0.9999])
def test_dead_mask_is_codes_at_or_above_the_threshold_and_never_nodata(threshold):
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = (codes != NODATA) & (codes >= threshold_code(threshold))
    assert np.array_equal(dead_mask(codes, threshold), expected)
    out, scratch = np.empty(codes.shape, bool), np.empty(codes.shape, np.uint8)
    assert dead_mask(codes, threshold, out, scratch) is out
    assert np.array_equal(out, expected)


def test_quantise_rounds_clips_and_marks_invalid_pixels_the_same_into_reused_arrays():
    rng = np.random.default_rng(0)
    probs = (rng.random((40, 30)) * 1.4 - 0.2).astype(np.float32)
    valid = rng.random((40, 30)) < 0.8
    expected = np.rint(np.clip(probs, 0, 1) * PROB_SCALE).astype(np.uint8)
    expected[~valid] = NODATA
    assert np.array_equal(quantise(probs, valid), expected)
    into = np.empty(probs.shape, np.uint8)
    assert quantise(probs.copy(), valid, into=into) is into
    assert np.array_equal(into, expected)
    everywhere = quantise(probs.copy(), np.ones(probs.shape, bool), into=np.empty(probs.shape, np.uint8))
    assert (everywhere != NODATA).all()
