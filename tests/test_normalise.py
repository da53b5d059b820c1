import numpy as np
import pytest

from deadtree.raster.normalise import SAFETY_CLIP, BandStretch, band_percentiles


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
