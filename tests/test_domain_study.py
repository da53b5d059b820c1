"""The pieces of the west -> east study: frames through the real pipeline, histogram matching, distances."""
import numpy as np
import pytest

from deadtree.evaluation.domain_study import (
    HistogramMatcher,
    band_wasserstein,
    dead_tree_contrast,
    frechet_distance,
    sample_pixels,
    score_frames,
    stretched,
)
from deadtree.training.frames import Frame
from tests.scenes import default_discs, disc_mask

BANDS = ("R", "G", "B", "NIR")


def disc_frame(seed: int, size: int = 160) -> Frame:
    rng = np.random.default_rng(seed)
    mask = disc_mask(size, size, default_discs(size, size))
    image = rng.integers(40, 111, size=(size, size, 4)).astype(np.uint8)
    image[mask] = 240
    return Frame(f"wa001_{seed}", "wa001", image, mask)


def test_frames_are_scored_through_the_pipeline(tmp_path, toy_models):
    frames = [disc_frame(0), disc_frame(1)]
    good = score_frames(frames, BANDS, "toy", model="toy-rgbn").as_dict()
    assert good["pixel_iou"] > 0.5 and good["object_f1"] > 0.9
    # darkening the discs (an "adaptation" gone wrong) must show up in the scores
    dark = score_frames(frames, BANDS, "dark", model="toy-rgbn",
                        adapt=lambda image: np.where(image > 200, 90, image).astype(np.uint8)).as_dict()
    assert dark["pixel_iou"] < 0.1 and dark["condition"] == "dark"
    # the sweep agrees with the score at the model's own threshold, and its best is at least as good
    own = min(good["sweep_iou"], key=lambda t: abs(float(t) - threshold_of_toy()))
    assert good["sweep_iou"][own] == pytest.approx(good["pixel_iou"])
    assert good["best_threshold_iou"] >= good["pixel_iou"] - 1e-9


def threshold_of_toy() -> float:
    from deadtree.evaluation.domain_study import _threshold_of

    return _threshold_of("toy-rgbn")


def test_histogram_matching_takes_on_the_reference_distribution():
    rng = np.random.default_rng(0)
    reference = [rng.normal(150, 20, size=(64, 64, 2)).clip(0, 255).astype(np.uint8) for _ in range(3)]
    source = rng.normal(70, 8, size=(64, 64, 2)).clip(0, 255).astype(np.uint8)
    matched = HistogramMatcher(reference)(source)
    assert abs(matched.mean() - 150) < 3 and abs(matched.std() - 20) < 3
    # monotone: the order of the pixel values is kept
    order = np.argsort(source[..., 0].ravel(), kind="stable")
    assert np.all(np.diff(matched[..., 0].ravel()[order].astype(int)) >= 0)


def test_distances_are_zero_for_the_same_sample_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, size=(5000, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert band_wasserstein(a, a) == pytest.approx(0, abs=1e-9)
    near, far = a + 0.05, a + 0.2
    assert 0 < frechet_distance(a, near) < frechet_distance(a, far)
    assert band_wasserstein(a, far) == pytest.approx(0.2, rel=1e-6)


def test_pixel_samples_are_stretched_like_the_models_input():
    frame = disc_frame(3)
    unit = stretched(frame.image)
    px = sample_pixels(unit, 1000)
    assert px.shape == (1000, 4)
    assert np.percentile(unit[0], 1) == pytest.approx(0, abs=0.02)
    assert np.percentile(unit[0], 99) == pytest.approx(1, abs=0.02)


def test_dead_tree_contrast_is_the_dead_minus_live_mean_per_band_and_shrinks_when_painted_over():
    unit = np.full((2, 10, 10), 0.3)
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    unit[0][mask] = 0.9  # dead crowns bright in band 0, unchanged in band 1
    assert dead_tree_contrast(unit, mask) == pytest.approx([0.6, 0.0])
    painted = unit.copy()
    painted[0][mask] = 0.4  # a translator that paints the crowns over with canopy
    assert dead_tree_contrast(painted, mask)[0] == pytest.approx(0.1)
    assert dead_tree_contrast(unit, np.zeros((10, 10), bool)) is None


def test_paired_bootstrap_sees_a_consistent_gain_and_no_gain_in_identical_conditions():
    from deadtree.evaluation.domain_study import paired_bootstrap_iou

    rng = np.random.default_rng(3)
    base = [(int(t), int(f), int(n)) for t, f, n in rng.integers(5, 50, size=(40, 3))]
    assert paired_bootstrap_iou(base, base) == (0.0, 0.0, 0.0)
    better = [(t + 5, max(f - 2, 0), max(n - 5, 0)) for t, f, n in base]  # every frame gains
    difference, low, high = paired_bootstrap_iou(base, better)
    assert 0 < low <= difference <= high
    # a gain on one frame and an equal loss on another: the interval straddles zero
    mixed = list(base)
    mixed[0] = (base[0][0] + 20, base[0][1], base[0][2])
    mixed[1] = (max(base[1][0] - 20, 0), base[1][1] + 20, base[1][2])
    _, low, high = paired_bootstrap_iou(base, mixed)
    assert low < 0 < high
    with pytest.raises(ValueError):
        paired_bootstrap_iou(base, base[:-1])
