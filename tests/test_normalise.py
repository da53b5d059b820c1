import numpy as np
import pytest

from deadtree.raster.normalise import SAFETY_CLIP, BandStretch, band_percentiles, stretch_and_medians


def reference(stretch, pixels):
    low = np.asarray(stretch.low, np.float64)[:, None, None]
    high = np.asarray(stretch.high, np.float64)[:, None, None]
    return np.clip((pixels.astype(np.float64) - low) / (high - low), *SAFETY_CLIP)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("high", [200.0, 60.0])  # 60: 8-bit values past it scale beyond the clip
def test_stretch_matches_the_formula_and_keeps_the_clip_where_it_binds(dtype, high):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, 40, 50)).astype(dtype)
    stretch = BandStretch((30.0, 20.0, 45.0), (high, high + 10, high + 5))
    scaled = stretch.apply(pixels)
    assert scaled.dtype == np.float32 and scaled.shape == pixels.shape
    np.testing.assert_allclose(scaled, reference(stretch, pixels), atol=2e-6)
    assert scaled.min() >= SAFETY_CLIP[0] and scaled.max() <= SAFETY_CLIP[1]


def test_wide_integer_types_are_clipped_at_their_extremes():
    pixels = np.array([[[0, 65535]]], np.uint16)
    scaled = BandStretch((100.0,), (4000.0,)).apply(pixels)
    assert scaled.max() == SAFETY_CLIP[1]


def test_percentiles_count_only_valid_pixels():
    pixels = np.arange(200, dtype=np.uint8).reshape(1, 10, 20)
    valid = pixels[0] >= 100
    stretch = band_percentiles(pixels, valid, 0.0, 100.0)
    assert stretch.low == (100.0,) and stretch.high == (199.0,)


@pytest.mark.parametrize("dtype,top", [(np.uint8, 256), (np.uint16, 4096), (np.uint16, 65536), (np.int16, 900),
                                       (np.float32, 1)])
@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_counted_percentiles_and_medians_equal_numpys(dtype, top, size):
    rng = np.random.default_rng(size)
    pixels = (rng.random((2, 1, size)) * top).astype(dtype)
    stretch = band_percentiles(pixels, None, 1.0, 99.0)
    for band, lo, hi in zip(pixels, stretch.low, stretch.high):
        expected_lo, expected_hi = np.percentile(band, [1.0, 99.0])
        assert lo == pytest.approx(expected_lo, abs=1e-9)
        assert hi == pytest.approx(expected_hi if expected_hi > expected_lo else expected_lo + 1, abs=1e-9)
    together, medians = stretch_and_medians(pixels, None, 1.0, 99.0)
    assert together == stretch
    np.testing.assert_allclose(medians, np.median(pixels.reshape(2, -1), axis=1), atol=1e-9)


def test_a_band_without_valid_pixels_gets_a_neutral_stretch_and_median():
    pixels = np.ones((1, 3, 3), np.uint8)
    none = np.zeros((3, 3), bool)
    assert band_percentiles(pixels, none) == BandStretch((0.0,), (1.0,))
    assert stretch_and_medians(pixels, none)[1].tolist() == [0.0]
    assert stretch_and_medians(pixels, none)[0] == BandStretch((0.0,), (1.0,))
