"""Temporal window helpers used project-wide: IoU, greedy 1-D NMS, clamping.

A window is a `(start, end)` pair in seconds (or any common unit); arrays of windows have shape (N, 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _as_windows(x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        if arr.shape[0] != 2:
            raise ValueError(f"a window is a (start, end) pair, got shape {arr.shape}")
        arr = arr[None, :]
    if arr.ndim != 2 or (arr.size and arr.shape[1] < 2):
        raise ValueError(f"windows must have shape (N, 2), got {arr.shape}")
    return arr[:, :2]


def temporal_iou(a: ArrayLike, b: ArrayLike) -> Any:  # a float for two single windows, else an array
    """Temporal IoU = overlap / union (0 when disjoint or when the union is empty).

    `a` and `b` are single windows (returns a float) or arrays of shape (N, 2) and (M, 2) (returns (N, M)).
    A 1-D window against an (M, 2) array returns shape (M,); an (N, 2) array against one window, (N,).
    """
    a_single = np.ndim(a) == 1
    b_single = np.ndim(b) == 1
    wa, wb = _as_windows(a), _as_windows(b)
    # IoU of 1-D intervals: intersection / (len_a + len_b - intersection)
    inter = np.clip(
        np.minimum(wa[:, None, 1], wb[None, :, 1]) - np.maximum(wa[:, None, 0], wb[None, :, 0]), 0.0, None
    )
    union = (wa[:, 1] - wa[:, 0])[:, None] + (wb[:, 1] - wb[:, 0])[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if a_single and b_single:
        return float(iou[0, 0])
    if a_single:
        return iou[0]
    if b_single:
        return iou[:, 0]
    return iou


def nms(windows: ArrayLike, scores: Sequence[float] | np.ndarray, threshold: float, top_k: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression over 1-D windows.

    Visits windows by descending score (stable for ties) and drops any whose IoU with an already kept
    window is strictly greater than `threshold`. Returns the kept indices in descending score order,
    at most `top_k` of them.
    """
    w = _as_windows(windows) if np.size(windows) else np.zeros((0, 2))
    s = np.asarray(scores, dtype=float)
    if len(w) != len(s):
        raise ValueError(f"{len(w)} windows but {len(s)} scores")
    order = np.argsort(-s, kind="stable")
    iou = temporal_iou(w, w) if len(w) else np.zeros((0, 0))
    keep: list[int] = []
    suppressed = np.zeros(len(w), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if top_k is not None and len(keep) >= top_k:
            break
        suppressed |= iou[i] > threshold
    return np.asarray(keep, dtype=int)


def clamp_windows(windows: ArrayLike, duration: float) -> np.ndarray:
    """Clip windows to [0, duration] and order each pair so that start <= end; returns (N, 2)."""
    w = _as_windows(windows) if np.size(windows) else np.zeros((0, 2))
    w = np.sort(w, axis=1)
    return np.clip(w, 0.0, float(duration))


def batched_nms(windows: ArrayLike, scores: ArrayLike, threshold: float, top_k: int, chunk: int = 1024) -> np.ndarray:
    """Greedy 1-D NMS run independently on each row of a batch, vectorised over rows.

    windows (B, N, 2), scores (B, N) -> (B, top_k) indices into N in descending score order, -1 where a row
    keeps fewer than top_k windows. Same rule as `nms`: drop a window whose IoU with a kept one is > threshold.
    """
    w = np.asarray(windows, dtype=float)
    s = np.asarray(scores, dtype=float)
    kept = np.full((s.shape[0], top_k), -1, dtype=int)
    for lo in range(0, s.shape[0], chunk):
        kept[lo : lo + chunk] = _batched_nms_chunk(w[lo : lo + chunk], s[lo : lo + chunk], threshold, top_k)
    return kept


def _batched_nms_chunk(w: np.ndarray, s: np.ndarray, threshold: float, top_k: int) -> np.ndarray:
    b, n = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    ws = np.take_along_axis(w, order[..., None], axis=1)  # windows by descending score
    length = ws[..., 1] - ws[..., 0]
    suppressed = np.zeros((b, n), dtype=bool)
    kept = np.full((b, top_k), -1, dtype=int)
    count = np.zeros(b, dtype=int)
    for i in range(n):
        rows = np.flatnonzero(~suppressed[:, i] & (count < top_k))
        if rows.size == 0:
            if (count >= top_k).all():
                break
            continue
        kept[rows, count[rows]] = order[rows, i]
        count[rows] += 1
        # IoU of the newly kept window with every window of its row (later ones matter)
        cur = ws[rows, i]
        inter = np.clip(np.minimum(cur[:, None, 1], ws[rows, :, 1]) - np.maximum(cur[:, None, 0], ws[rows, :, 0]), 0, None)
        union = length[rows, i][:, None] + length[rows] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        suppressed[rows] |= iou > threshold
    return kept
