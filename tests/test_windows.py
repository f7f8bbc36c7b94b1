"""Temporal window helpers: IoU, greedy NMS (single and batched), clamping; hand-computed values."""

import numpy as np
import pytest

from backends.analysis.windows import batched_nms, clamp_windows, nms, temporal_iou


def test_iou_of_single_windows_by_hand():
    assert temporal_iou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert temporal_iou([0, 10], [0, 10]) == 1.0
    assert temporal_iou([0, 10], [10, 20]) == 0.0  # touching, no overlap
    assert temporal_iou([0, 10], [2, 4]) == pytest.approx(0.2)
    assert temporal_iou([3, 3], [3, 3]) == 0.0  # empty union gives 0, not NaN


def test_iou_vectorised_shapes_and_values():
    a = np.array([[0, 10], [5, 15]])
    b = np.array([[0, 10], [20, 30], [0, 15]])
    iou = temporal_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou, [[1.0, 0.0, 10 / 15], [5 / 15, 0.0, 10 / 15]])
    assert temporal_iou([0, 10], b).shape == (3,)
    assert temporal_iou(a, [0, 10]).shape == (2,)


def test_nms_suppresses_overlaps_above_threshold_in_score_order():
    wins = [[0, 10], [1, 10], [20, 30], [0, 4]]
    scores = [0.9, 0.8, 0.7, 0.95]
    # by score: 3 [0,4], 0 [0,10] (IoU 0.4 with [0,4], kept), 1 [1,10] (IoU 0.9 with [0,10], dropped), 2 kept
    assert nms(wins, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(wins, scores, 0.5, top_k=2).tolist() == [3, 0]
    # threshold 0.3: [0,10] overlaps [0,4] with IoU 0.4 > 0.3 and goes; [1,10] has IoU 3/10 with [0,4],
    # not above 0.3, so it stays
    assert nms(wins, scores, 0.3).tolist() == [3, 1, 2]
    assert nms([], [], 0.5).tolist() == []


def test_batched_nms_matches_single_nms():
    rng = np.random.default_rng(3)
    wins = np.sort(rng.random((40, 25, 2)) * 30, axis=-1)
    scores = rng.random((40, 25))
    kept = batched_nms(wins, scores, 0.45, top_k=6, chunk=7)
    for i in range(40):
        ref = nms(wins[i], scores[i], 0.45, top_k=6).tolist()
        assert kept[i][: len(ref)].tolist() == ref
        assert (kept[i][len(ref):] == -1).all()


def test_clamp_windows_orders_and_clips():
    out = clamp_windows([[-2, 5], [12, 8], [3, 40]], duration=30)
    np.testing.assert_allclose(out, [[0, 5], [8, 12], [3, 30]])
