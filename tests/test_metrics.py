import numpy as np
import pytest

from deadtree.metrics import ObjectCounts, PixelCounts, Scores


def test_pixel_scores_on_hand_made_masks():
    truth = np.zeros((10, 10), bool)
    truth[0:4, 0:4] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[2:6, 0:4] = True  # 16 px, 8 overlap
    counts = PixelCounts()
    counts.add(pred, truth)
    s = counts.scores()
    assert (counts.tp, counts.fp, counts.fn) == (8, 8, 8)
    assert s["iou"] == pytest.approx(8 / 24)
    assert s["f1"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx(0.5)


def test_pixel_scores_are_pooled_not_averaged():
    counts = PixelCounts()
    big = np.ones((10, 10), bool)
    counts.add(big, big)  # 100 tp
    small_truth = np.zeros((10, 10), bool)
    small_truth[0, 0] = True
    counts.add(np.zeros((10, 10), bool), small_truth)  # 1 fn
    assert counts.scores()["iou"] == pytest.approx(100 / 101)


def test_object_matching_is_one_to_one_at_iou_quarter():
    truth = np.zeros((20, 20), bool)
    truth[1:5, 1:5] = True  # object A (16 px)
    truth[10:12, 10:12] = True  # object B (4 px)
    pred = np.zeros((20, 20), bool)
    pred[1:5, 1:3] = True  # half of A: IoU 0.5 -> match
    pred[10:11, 10:11] = True  # 1 px of B: IoU 0.25 -> match (>=)
    pred[15:18, 15:18] = True  # a false alarm
    counts = ObjectCounts()
    counts.add(pred, truth)
    assert (counts.matched, counts.predicted, counts.truth) == (2, 3, 2)
    s = counts.scores()
    assert s["object_precision"] == pytest.approx(2 / 3)
    assert s["object_recall"] == pytest.approx(1.0)
    assert s["object_f1"] == pytest.approx(0.8)


def test_object_below_threshold_is_not_matched_and_diagonal_pixels_connect():
    truth = np.zeros((10, 10), bool)
    truth[0:4, 0:4] = True
    pred = np.zeros((10, 10), bool)
    pred[0, 0] = pred[1, 1] = pred[2, 2] = True  # one 8-connected object, IoU 3/16 < 0.25
    counts = ObjectCounts()
    counts.add(pred, truth)
    assert (counts.matched, counts.predicted) == (0, 1)


def test_one_prediction_cannot_match_two_truths():
    truth = np.zeros((4, 10), bool)
    truth[:, 0:3] = True
    truth[:, 4:7] = True
    pred = np.zeros((4, 10), bool)
    pred[:, 0:7] = True  # IoU 12/28 with each truth object
    counts = ObjectCounts()
    counts.add(pred, truth)
    assert counts.matched == 1


def test_scores_respect_validity():
    truth = np.ones((4, 4), bool)
    pred = np.zeros((4, 4), bool)
    valid = np.zeros((4, 4), bool)
    scores = Scores()
    scores.add(pred, truth, valid)
    assert scores.summary()["count_truth"] == 0
    assert scores.pixels.fn == 0


def test_probability_agreement_on_hand_made_frames():
    from deadtree.metrics import probability_agreement

    reference = [np.array([[0.9, 0.2], [0.6, 0.1]], np.float32), np.array([[0.7]], np.float32)]
    candidate = [np.array([[0.8, 0.3], [0.4, 0.1]], np.float32), np.array([[0.75]], np.float32)]
    agreement = probability_agreement(candidate, reference, threshold=0.5)
    # masks: reference has 3 pixels at >= 0.5, the candidate 2 of them and nothing else -> IoU 2/3
    assert agreement["mask_iou"] == pytest.approx(2 / 3)
    assert agreement["max_abs_probability_difference"] == pytest.approx(0.2, abs=1e-6)
    empty = [np.zeros((2, 2), np.float32)]
    assert probability_agreement(empty, empty, 0.5) == {"max_abs_probability_difference": 0.0, "mask_iou": 1.0}


def test_error_breakdown_sorts_hand_made_errors():
    from deadtree.metrics import ErrorBreakdown

    truth = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = True  # a crown of 16 px, predicted one column wide (4 px too many)
    pred[2:6, 2:7] = True
    truth[10:13, 10:13] = True  # a crown of 9 px, predicted as its top row only (6 px short)
    pred[10, 10:13] = True
    truth[16:18, 16:18] = True  # a crown of 4 px that nothing overlaps
    pred[16:19, 1:4] = True  # a false patch of 9 px
    counts = ErrorBreakdown()
    counts.add(pred, truth)
    assert (counts.correct, counts.extra_at_found, counts.short_at_found) == (16 + 3, 4, 6)
    assert (counts.false_patches, counts.missed_crowns) == (9, 4)
    shares = counts.shares()
    assert abs(sum(shares.values()) - 1) < 1e-12
    assert abs(shares["correct"] - 19 / 42) < 1e-12  # the pooled IoU: 19 of a 42 px union
