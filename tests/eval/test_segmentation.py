import numpy as np
import pytest

from vidlang.eval.segmentation import edit_score, f1_counts, segmentation_metrics, segments

A = np.array


def test_segments_exclusive_ends_and_background():
    assert segments(A([0, 1, 1, 0, 2, 2])) == ([1, 2], [1, 4], [3, 6])
    assert segments(A([3, 3, 3])) == ([3], [0], [3])  # last segment ends at len (exclusive)
    assert segments(A([0, 0])) == ([], [], [])


def test_hand_case_all_metrics():
    gt = A([0, 0, 1, 1, 1, 0, 2, 2])
    pred = A([0, 1, 1, 1, 0, 0, 2, 2])
    m = segmentation_metrics([pred], [gt])
    assert m["frame_accuracy"] == 75.0
    assert m["background_baseline"] == 37.5
    assert m["step_accuracy"] == 80.0  # 4 of the 5 step frames
    assert m["edit"] == 100.0
    # segment 1: IoU = (4-2)/(5-1) = 0.5 -> a hit even at 0.50
    assert m["f1@10"] == m["f1@25"] == m["f1@50"] == 100.0


def test_exclusive_end_decides_iou():
    # gt [0,4), pred [0,2): IoU 0.5 with exclusive ends (inclusive ends would give 1/3 and miss at 0.50)
    assert f1_counts(A([1, 1, 0, 0]), A([1, 1, 1, 1]), 0.5) == (1, 0, 0)


def test_greedy_temporal_order_no_fallback():
    gt = A([1, 1, 1, 1, 1, 1, 0, 1, 1, 1])  # A = [0,6), B = [7,10)
    pred = A([1, 1, 0, 1, 1, 1, 1, 1, 0, 0])  # p1 = [0,2) (IoU_A 1/3), p2 = [3,8) (IoU_A 3/8, IoU_B 1/7)
    # p1 takes A; p2's best is A (already hit) -> FP, although B would pass 0.10: no fall-back
    assert f1_counts(pred, gt, 0.10) == (1, 1, 1)
    assert segmentation_metrics([pred], [gt])["f1@10"] == pytest.approx(50.0)


def test_label_must_match():
    assert f1_counts(A([2, 2, 2]), A([1, 1, 1]), 0.1) == (0, 1, 1)


def test_counts_summed_over_videos_before_f1():
    v1 = A([1, 1, 1])
    v2_gt, v2_pred = A([1, 0, 2, 0, 3]), A([0, 0, 0, 0, 0])
    m = segmentation_metrics([v1, v2_pred], [v1, v2_gt])
    # tp=1, fp=0, fn=3 -> P=1, R=0.25, F1=40 (averaging per-video F1 would give 50)
    assert m["f1@50"] == pytest.approx(40.0)
    assert m["edit"] == pytest.approx(50.0)  # (100 + 0) / 2


def test_edit_levenshtein_background_removed():
    assert edit_score(A([1, 1, 3, 3]), A([1, 2, 2, 3])) == pytest.approx(100 * (1 - 1 / 3))
    # a background gap splits a run into two segments of the same label
    assert edit_score(A([1, 0, 1]), A([1, 1, 1])) == pytest.approx(50.0)
    assert edit_score(A([0, 0]), A([0, 0])) == 100.0


def test_all_background_prediction():
    gt = [A([0, 0, 0, 5, 5, 0]), A([0, 7, 7, 0])]
    pred = [np.zeros(6, int), np.zeros(4, int)]
    m = segmentation_metrics(pred, gt)
    assert m["frame_accuracy"] == m["background_baseline"] == 60.0
    assert m["step_accuracy"] == 0.0 and m["f1@10"] == 0.0 and m["edit"] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="video 0"):
        segmentation_metrics([A([1, 1])], [A([1, 1, 1])])
