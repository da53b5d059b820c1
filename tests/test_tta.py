"""Test-time augmentation: mirror images and magnifications averaged back onto each tile's grid."""
import numpy as np
import pytest

from deadtree.tta import augmented


def smooth_field(shape):
    rows, cols = np.mgrid[0:shape[-2], 0:shape[-1]]
    field = 0.5 + 0.4 * np.sin(rows / 9.0) * np.cos(cols / 13.0)
    return np.broadcast_to(field, shape).astype(np.float32).copy()


def band_mean(x):
    return x.mean(axis=1, keepdims=True)


def test_nothing_asked_is_the_plain_run():
    x = np.random.default_rng(0).random((2, 4, 64, 96), dtype=np.float32)
    np.testing.assert_array_equal(augmented(band_mean, x), band_mean(x))


@pytest.mark.parametrize("shape", [(2, 4, 64, 96), (1, 4, 70, 90)])
def test_magnified_runs_come_back_to_the_tile_grid_at_the_network_stride(shape):
    seen = []

    def model(x):
        seen.append(x.shape)
        return band_mean(x)

    x = smooth_field(shape)
    out = augmented(model, x, scales=(1.5,), multiple=32)
    assert out.shape == (shape[0], 1, *shape[2:])
    assert seen[0] == shape and all(s % 32 == 0 for s in seen[1][2:])  # padded to the stride
    assert seen[1][2] >= round(shape[2] * 1.5) and seen[1][3] >= round(shape[3] * 1.5)
    # a pixelwise model of a smooth image answers the same at any magnification
    assert np.abs(out - band_mean(x)).max() < 0.02


def test_a_model_that_sees_size_answers_differently_when_magnified():
    """The check has teeth: a model that measures blob width is changed by magnification, so the mean moves."""
    x = np.zeros((1, 1, 64, 64), np.float32)
    x[..., 28:36, 28:36] = 1.0

    def wide_only(batch):  # 1 where a 11-px box is all bright: only the magnified square (12 px) passes
        from scipy import ndimage
        return ndimage.minimum_filter(batch, size=(1, 1, 11, 11))

    assert wide_only(x).max() == 0
    assert augmented(wide_only, x, scales=(1.5,)).max() > 0.05


def test_flips_average_the_mirror_images():
    x = np.random.default_rng(1).random((1, 1, 32, 32), dtype=np.float32)

    def corner(batch):  # not mirror-symmetric: the value one pixel to the right
        return np.roll(batch, -1, axis=-1)

    expected = (corner(x) + corner(x[..., ::-1])[..., ::-1] + corner(x[..., ::-1, :])[..., ::-1, :]) / 3
    np.testing.assert_allclose(augmented(corner, x, flips=True), expected, rtol=1e-6)
