"""Frame stacks shared by the augmentations: validation of uint8 RGB clips (T, H, W, 3), resizing, centre squares."""

from __future__ import annotations

import cv2
import numpy as np

from backends.core.errors import MomentLensError


class AugmentError(MomentLensError):
    """Augmentation options or input frames that cannot be used."""


def resize_stack(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (T, h, w, C) to (T, size, size, C) in one cv2 call (frames stacked as channels)."""
    t, h, w, c = frames.shape
    if h * w > size * size:  # shrinking: INTER_AREA (anti-aliased), which takes <= 4 channels
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    stacked = np.ascontiguousarray(frames.transpose(1, 2, 0, 3).reshape(h, w, t * c))
    out = cv2.resize(stacked, (size, size), interpolation=cv2.INTER_LINEAR)
    return out.reshape(size, size, t, c).transpose(2, 0, 1, 3)


# --------------------------------------------------------------------------------------------
# One entry point over the methods
# --------------------------------------------------------------------------------------------
def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate uint8 RGB frames (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise AugmentError(f"expected RGB frames shaped (T, H, W, 3), got {frames.shape}.")
    if frames.dtype != np.uint8:
        raise AugmentError(f"expected uint8 frames, got {frames.dtype}.")
    return frames


def square_clip(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to size x size (the un-augmented input of FAME and motion views)."""
    frames = check_frames(frames)
    _, h, w, _ = frames.shape
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return resize_stack(frames[:, y:y + s, x:x + s], size)
