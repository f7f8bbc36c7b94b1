"""The 2D temporal map of 2D-TAN (Zhang et al. AAAI 2020): N clips, N x N candidate moments.

Cell (a, b), a <= b, is the moment from the start of clip a to the end of clip b. Only the upper
triangle is valid (dense mask) and long videos use the sparse sampling mask of 2D-TAN. This module only
builds grids, masks and pooled cell features; scoring lives in `zero_shot` (and the trained head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_CLIP_CHOICES = (16, 32, 64, 128)  # the map sizes used by 2D-TAN (Charades 16, ActivityNet 64, TACoS 128)
MASK_KINDS = ("dense", "sparse", "auto")


@dataclass
class TemporalMap:
    """A scored 2D temporal map: scores[a, b] is the moment [clip_times[a, 0], clip_times[b, 1]]."""

    num_clips: int  # N
    clip_times: np.ndarray  # (N, 2) start and end of each clip in seconds
    scores: np.ndarray  # (N, N) float, NaN where mask is False
    mask: np.ndarray  # (N, N) bool, valid cells

    def cell_window(self, a: int, b: int) -> tuple[float, float]:
        """Seconds covered by cell (a, b): start of clip a to end of clip b."""
        return float(self.clip_times[a, 0]), float(self.clip_times[b, 1])

    def to_dict(self) -> dict:
        """`{"num_clips", "clip_times", "scores"}` with null for invalid cells (the `map2d --json` contract)."""
        scores = [[None if not self.mask[a, b] or not np.isfinite(v) else round(float(v), 6)
                   for b, v in enumerate(row)] for a, row in enumerate(self.scores)]
        return {"num_clips": int(self.num_clips),
                "clip_times": [[round(float(s), 4), round(float(e), 4)] for s, e in self.clip_times],
                "scores": scores}


# --- clip grid -----------------------------------------------------------------------------------
def default_num_clips(duration: float, fps: float = 1.0) -> int:
    """The map size whose clip length is closest (in log scale) to one sampled frame, capped at 128."""
    frames = max(1.0, duration * fps)
    return min(NUM_CLIP_CHOICES, key=lambda n: (abs(math.log2(n) - math.log2(frames)), -n))


def clip_grid(duration: float, num_clips: int, start: float = 0.0) -> np.ndarray:
    """(N, 2) equal clips tiling [start, start + duration]."""
    edges = start + np.linspace(0.0, float(duration), num_clips + 1)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def resample_to_clips(values: np.ndarray, times: np.ndarray, clip_times: np.ndarray) -> np.ndarray:
    """Average the per-frame rows of `values` (T, ...) whose time falls in each clip; a clip holding no
    frame takes the frame shown at its centre (the last one sampled before it). Returns (N, ...)."""
    values = np.asarray(values)
    times = np.asarray(times, dtype=float)
    n = len(clip_times)
    if len(times) == 0:
        raise ValueError("no frames to resample")
    # frame t belongs to the clip whose [start, end) holds it; the last clip also holds its end
    idx = np.searchsorted(clip_times[:, 0], times, side="right") - 1
    idx = np.clip(idx, 0, n - 1)
    flat = values.reshape(len(times), -1).astype(np.float64)
    sums = np.zeros((n, flat.shape[1]))
    np.add.at(sums, idx, flat)
    counts = np.bincount(idx, minlength=n).astype(float)
    out = np.empty_like(sums)
    has = counts > 0
    out[has] = sums[has] / counts[has, None]
    if not has.all():
        centres = clip_times[~has].mean(axis=1)
        shown = np.clip(np.searchsorted(times, centres, side="right") - 1, 0, len(times) - 1)
        out[~has] = flat[shown]
    return out.reshape((n,) + values.shape[1:]).astype(values.dtype if values.dtype.kind == "f" else np.float64)


# --- masks ---------------------------------------------------------------------------------------
def dense_moment_mask(num_clips: int, max_clips: int | None = None) -> np.ndarray:
    """Every cell with a <= b (and at most `max_clips` clips long when given)."""
    a, b = np.indices((num_clips, num_clips))
    mask = b >= a
    if max_clips is not None:
        mask &= (b - a + 1) <= max_clips
    return mask


def sparse_moment_mask(num_clips: int) -> np.ndarray:
    """2D-TAN sparse sampling mask (closed form, docs/methods/2d-tan.md): with L = b - a + 1, valid if L <= 16, else
    with k = ceil(log2(L / 8)), s = 2^(k-1), s' = 2^(k+2) - 1: a mod s == 0 and (b - s') mod s == 0."""
    a, b = np.indices((num_clips, num_clips))
    length = b - a + 1
    mask = (length >= 1) & (length <= 16)
    long_ = length > 16
    k = np.ceil(np.log2(np.where(long_, length, 16) / 8.0)).astype(int)
    stride = 2 ** (k - 1)
    offset = 2 ** (k + 2) - 1
    mask |= long_ & (a % stride == 0) & ((b - offset) % stride == 0)
    return mask


def moment_mask(num_clips: int, kind: str = "auto") -> np.ndarray:
    """`dense`, `sparse`, or `auto` (dense up to 64 clips, sparse above, as 2D-TAN does for long videos)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask {kind!r}; use one of {', '.join(MASK_KINDS)}")
    if kind == "auto":
        kind = "dense" if num_clips <= 64 else "sparse"
    return dense_moment_mask(num_clips) if kind == "dense" else sparse_moment_mask(num_clips)


def cell_times(clip_times: np.ndarray) -> np.ndarray:
    """(N, N, 2): cell (a, b) spans [start of clip a, end of clip b] (meaningful where a <= b)."""
    n = len(clip_times)
    out = np.empty((n, n, 2))
    out[..., 0] = clip_times[:, 0][:, None]
    out[..., 1] = clip_times[:, 1][None, :]
    return out


def valid_cells(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row (start clip) and column (end clip) indices of the valid cells."""
    rows, cols = np.nonzero(mask)
    return rows, cols


# --- pooled cell features (input of the trained grounding head) ------------------------------------
def pool_cell_features(clip_features: np.ndarray, mask: np.ndarray, mode: str = "max") -> np.ndarray:
    """(N, D) clip features -> (N, N, D) cell features pooled over clips a..b; zeros where mask is False.

    2D-TAN "Pool" variant; computed by extending each row one clip at a time, O(N^2 D) with N vectorised.
    """
    if mode not in ("max", "mean"):
        raise ValueError(f"unknown pooling {mode!r}; use 'max' or 'mean'")
    x = np.asarray(clip_features, dtype=np.float32)
    n, d = x.shape
    out = np.zeros((n, n, d), dtype=np.float32)
    acc = x.copy()  # acc[a] = pool over clips a..a+offset
    starts = np.arange(n)
    for offset in range(n):
        rows = starts[: n - offset]
        if offset > 0:
            nxt = x[rows + offset]
            acc = np.maximum(acc[: n - offset], nxt) if mode == "max" else acc[: n - offset] + nxt
        cell = acc if mode == "max" else acc / (offset + 1)
        out[rows, rows + offset] = cell
    out[~mask] = 0.0
    return out
