import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import rasterize

from deadtree.vector.geometry import clean_outline
from deadtree.vector.polygonize import stream_components


def strips_of(mask, probs, rows):
    for r in range(0, mask.shape[0], rows):
        yield r, mask[r:r + rows], probs[r:r + rows]


def random_mask(seed=0, shape=(120, 90)):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return noise > np.quantile(noise, 0.8)


@pytest.mark.parametrize("rows", [1, 7, 16, 500])
def test_streamed_components_rasterise_back_to_the_mask(rows):
    mask = random_mask()
    probs = mask * 0.9 + 0.05
    comps = list(stream_components(strips_of(mask, probs, rows)))
    burned = rasterize(((c.geometry, 1) for c in comps), out_shape=mask.shape, transform=Affine.identity(),
                       dtype="uint8").astype(bool)
    np.testing.assert_array_equal(burned, mask)
    assert sum(c.pixels for c in comps) == mask.sum()
    whole = list(stream_components(strips_of(mask, probs, 10_000)))
    assert len(comps) == len(whole)  # strip borders neither split nor merge components


def test_component_crossing_many_strips_keeps_its_hole_and_stats():
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    mask[15:25, 15:25] = False  # a hole
    probs = np.where(mask, 0.7, 0.0)
    probs[30, 30] = 0.95
    comps = list(stream_components(strips_of(mask, probs, 3)))
    assert len(comps) == 1
    geom = comps[0].geometry
    assert geom.geom_type == "Polygon" and len(geom.interiors) == 1
    assert geom.area == pytest.approx(30 * 30 - 10 * 10)
    assert comps[0].score_max == pytest.approx(0.95)
    assert comps[0].score_mean == pytest.approx((799 * 0.7 + 0.95) / 800)


def test_u_shape_joined_only_below_is_one_component():
    mask = np.zeros((20, 20), bool)
    mask[0:15, 2:5] = True
    mask[0:15, 12:15] = True
    mask[14:17, 2:15] = True
    comps = list(stream_components(strips_of(mask, mask * 1.0, 4)))
    assert len(comps) == 1
    assert comps[0].pixels == mask.sum()


def test_clean_outline_drops_slivers_fills_pinholes_and_stays_valid():
    mask = np.zeros((30, 30), bool)
    mask[2:20, 2:20] = True
    mask[10, 10] = False  # pinhole of 1 px
    mask[25, 25] = True  # sliver of 1 px
    comps = list(stream_components(strips_of(mask, mask * 1.0, 30)))
    outlines = [clean_outline(c.geometry, min_area_px=2, simplify_px=0.5) for c in comps]
    kept = [o for o in outlines if o is not None]
    assert len(kept) == 1
    assert len(kept[0].interiors) == 0
    assert kept[0].is_valid


def test_simplification_removes_staircase_vertices():
    rr, cc = np.mgrid[:60, :60]
    mask = (rr - 30) ** 2 + (cc - 30) ** 2 <= 25**2
    comp = next(stream_components(strips_of(mask, mask * 1.0, 60)))
    raw = comp.geometry
    simple = clean_outline(raw, 1, 0.75)
    n_raw, n_simple = shapely.get_num_coordinates(raw), shapely.get_num_coordinates(simple)
    assert n_simple < n_raw / 2
    assert abs(simple.area - raw.area) / raw.area < 0.01
    assert simple.is_valid
    burned = rasterize([(simple, 1)], out_shape=mask.shape, transform=Affine.identity(), dtype="uint8") > 0
    assert (burned & mask).sum() / (burned | mask).sum() > 0.97


def test_labelled_maxima_match_scipy():
    from scipy import ndimage

    from deadtree.components import labelled_maxima

    rng = np.random.default_rng(1)
    values = rng.random((120, 90)).astype(np.float32)
    labels, n = ndimage.label(values > 0.7)
    expected = ndimage.maximum(values, labels, np.arange(1, n + 1))
    np.testing.assert_allclose(labelled_maxima(values, labels, n), expected)


def test_scores_from_stored_codes_match_scores_from_probabilities():
    mask = random_mask(seed=3)
    codes = np.random.default_rng(3).integers(0, 255, mask.shape).astype(np.uint8)
    from_codes = list(stream_components(strips_of(mask, codes, 9), score_scale=1 / 254))
    from_probs = list(stream_components(strips_of(mask, codes / 254.0, 9)))
    assert len(from_codes) == len(from_probs) > 3
    for a, b in zip(from_codes, from_probs):
        assert a.pixels == b.pixels
        assert a.score_mean == pytest.approx(b.score_mean)
        assert a.score_max == pytest.approx(b.score_max)
        # only pixels under the mask count: a component's scores come from its own pixels
        assert a.score_max <= codes[mask].max() / 254
