"""FAME (Ding et al. 2022): a clip's moving foreground pasted on another clip's background.

Motion map from frame differences -> colour-histogram foreground score -> top-beta mask -> merge
(docs/methods/fame.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from backends.analysis.clips import AugmentError, check_frames


# --------------------------------------------------------------------------------------------
# FAME, temporal gradient, optical flow
# --------------------------------------------------------------------------------------------
@dataclass
class FameResult:
    """FAME foreground-background merging of one clip onto another clip's background."""

    motion_map: np.ndarray  # (H, W) float32 in [0, 1]: blurred, normalised mean frame difference
    score: np.ndarray  # (H, W) float32 in [0, 1]: colour-histogram foreground score
    mask: np.ndarray  # (H, W) bool: the top beta*H*W pixels of the score
    merged: np.ndarray  # (T, H, W, 3) uint8: foreground clip * M + background clip * (1 - M)
    foreground: np.ndarray  # (T, H, W, 3) uint8 source of the foreground
    background: np.ndarray  # (T, H, W, 3) uint8 source of the background
    beta: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "mask_fraction": round(float(self.mask.mean()), 6),
            "motion_map_mean": round(float(self.motion_map.mean()), 4),
            "frames": int(self.merged.shape[0]),
            "size": [int(self.merged.shape[1]), int(self.merged.shape[2])],
        }


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)).astype(np.float32)


def _fame_blur(x: np.ndarray, crop: int) -> np.ndarray:
    k = int(0.1 * crop) // 2 * 2 + 1  # FAME: kernel int(0.1*crop) made odd, sigma = kernel / 3
    return cv2.GaussianBlur(x.astype(np.float32), (k, k), k / 3.0)


def fame_colour_bins(rgb_mean: np.ndarray) -> np.ndarray:
    """FAME colour bin (0..999) of each pixel of a float RGB frame in [0, 255]."""
    hsv = cv2.cvtColor((rgb_mean / 255.0).astype(np.float32), cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0] / 360.0, hsv[..., 1], hsv[..., 2]
    hx = (s * np.cos(2 * np.pi * h) + 1) / 2  # hue/saturation on the unit disc, then to [0, 1]
    hy = (s * np.sin(2 * np.pi * h) + 1) / 2
    bx, by, bv = (np.rint(9 * c + 1).astype(np.int64) - 1 for c in (hx, hy, v))  # round(9x+1) in 1..10
    return (bx * 10 + by) * 10 + bv


def fame(
    frames: np.ndarray,
    other_frames: np.ndarray,
    beta: float = 0.5,
    fg_fraction: float = 0.5,
    bg_fraction: float = 0.1,
) -> FameResult:
    """FAME: paste the moving foreground of `frames` on the background of `other_frames`."""
    frames, other_frames = check_frames(frames), check_frames(other_frames)
    if frames.shape != other_frames.shape:
        raise AugmentError(
            f"FAME needs two clips of the same shape, got {frames.shape} and {other_frames.shape}."
        )
    if len(frames) < 2:
        raise AugmentError("FAME needs a clip of at least 2 frames to see motion.")
    if not 0 < beta < 1:
        raise AugmentError(f"FAME beta {beta} must be in (0, 1).")
    t, h, w, _ = frames.shape
    crop = min(h, w)
    x = frames.astype(np.float32)
    # FAME step 1: D = mean_t sum_c |x_t - x_(t+1)|, blurred and min-max normalised
    motion = np.abs(np.diff(x, axis=0)).sum(axis=-1).mean(axis=0)
    motion = _normalise(_fame_blur(motion, crop))
    # step 2: seeds, top 50% of pixels by D are foreground, bottom 10% background
    order = np.argsort(motion.ravel(), kind="stable")
    n = order.size
    fg_seed = order[n - int(round(fg_fraction * n)):]
    bg_seed = order[: int(round(bg_fraction * n))]
    # step 3: colour bins of the temporal-mean frame
    bins = fame_colour_bins(x.mean(axis=0)).ravel()
    # step 4: foreground probability per colour bin, smoothed background histogram
    p_fg = np.bincount(bins[fg_seed], minlength=1000).astype(np.float64)
    p_bg = np.bincount(bins[bg_seed], minlength=1000).astype(np.float64) + 1.0
    p_fg /= p_fg.sum()
    p_bg /= p_bg.sum()
    score = (p_fg[bins] / (p_fg[bins] + p_bg[bins])).reshape(h, w)
    score = _normalise(_fame_blur(score, crop))
    top = np.argsort(score.ravel(), kind="stable")[n - int(round(beta * n)):]
    flat = np.zeros(n, dtype=bool)
    flat[top] = True
    mask = flat.reshape(h, w)
    # step 5: merge with the other clip's background
    m = mask[None, :, :, None]
    merged = np.where(m, frames, other_frames)
    return FameResult(motion, score, mask, merged, frames, other_frames, beta)
