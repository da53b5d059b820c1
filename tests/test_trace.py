"""The boundary-edge outlines must be GDAL's 4-connected polygons, vertex for vertex."""
import numpy as np
import pytest
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape as to_shape

from deadtree.components import FOUR_CONNECTED
from deadtree.vector.run_labels import DenseLabels, RunLabels, label_mask
from deadtree.vector.trace import component_outlines


def gdal_outlines(labels, row_offset=0):
    traced = shapes(labels.astype(np.int32), mask=labels > 0, connectivity=4,
                    transform=Affine.translation(0, row_offset))
    return {int(value): to_shape(geom) for geom, value in traced}


def both_labellings(mask):
    flat = np.flatnonzero(mask)
    return [DenseLabels(mask, flat), RunLabels(mask.shape, flat)]


def assert_same_outlines(mask, row_offset=0):
    labels, n = ndimage.label(mask, structure=FOUR_CONNECTED)
    theirs = gdal_outlines(labels, row_offset)
    for ours in (component_outlines(mask, found, row_offset) for found in both_labellings(mask)):
        assert_outlines_match(ours, theirs, n)


def assert_outlines_match(ours, theirs, n):
    assert len(ours) == n == len(theirs)
    for k, outline in enumerate(ours, start=1):
        assert outline.is_valid
        # vertex for vertex: where each ring starts and which way it turns decide what simplifying keeps
        assert outline.wkt == theirs[k].wkt


@pytest.mark.parametrize("seed", range(40))
def test_random_masks_match_gdal(seed):
    # Salt-and-pepper masks of every density: diagonal contacts, pinched rings and holes in holes abound.
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 48, size=2))
    assert_same_outlines(rng.random(shape) < rng.uniform(0.05, 0.95))


def test_crown_like_blobs_with_row_offset_match_gdal():
    rng = np.random.default_rng(7)
    noise = ndimage.gaussian_filter(rng.random((200, 300)), 2.5)
    assert_same_outlines(noise > np.quantile(noise, 0.9), row_offset=1234)


def test_hole_touching_the_shell_at_a_corner():
    mask = np.ones((5, 5), bool)
    mask[1:3, 1:3] = False  # a hole ...
    mask[3, 3] = False  # ... and a second one meeting it only at a corner
    assert_same_outlines(mask)
    (outline,) = component_outlines(mask, label_mask(mask))
    assert outline.area == 25 - 5


def test_an_integer_mask_is_read_as_true_and_false():
    mask = np.zeros((6, 6), np.uint8)
    mask[1:4, 2:5] = 1
    (outline,) = component_outlines(mask, label_mask(mask))
    assert outline.bounds == (2, 1, 5, 4) and outline.area == 9


def test_no_components_no_outlines():
    mask = np.zeros((4, 4), bool)
    assert component_outlines(mask, label_mask(mask)) == []
