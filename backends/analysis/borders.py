"""Constant borders (letterbox bars above and below, pillarbox bars at the sides) of a video.

Bars carry no content: they dilute frame features and draw Grad-CAM heat. `detect_borders` looks at frames
sampled across the whole video and keeps the rows/columns, counted from each edge, that are dark and flat in
(almost) every frame that has content; a video whose content changes aspect ratio (a compilation) has no
*constant* border and is left as it is.

>>> b = detect_borders(frames)          # frames (T, H, W, 3) uint8 from across the video
>>> b.top, b.bottom, b.left, b.right    # pixels to drop on each side; b.crop(frame) drops them
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DARK = 24.0  # a bar row/column: mean luma at most this (0-255) ...
FLAT = 8.0  # ... and its luma's standard deviation at most this
AGREE = 0.9  # share of the content frames in which a line must be a bar
MAX_SIDE = 0.35  # never crop more than this share of the height (width) from one side
MIN_BAR = 4  # thinner bars (encoder padding, a dark edge) are ignored


@dataclass(frozen=True)
class Borders:
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def none(self) -> bool:
        return not (self.top or self.bottom or self.left or self.right)

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The content part of one frame (H, W[, C]) or of a stack (T, H, W, C) at the detected resolution."""
        if self.none:
            return frame
        h, w = frame.shape[-3:-1] if frame.ndim == 4 else frame.shape[:2]
        rows, cols = slice(self.top, h - self.bottom), slice(self.left, w - self.right)
        return frame[:, rows, cols] if frame.ndim == 4 else frame[rows, cols]

    def scaled(self, from_size: tuple[int, int], to_size: tuple[int, int]) -> Borders:
        """The same bars for frames of another resolution ((height, width) pairs)."""
        (h0, w0), (h1, w1) = from_size, to_size
        return Borders(round(self.top * h1 / h0), round(self.bottom * h1 / h0), round(self.left * w1 / w0),
                       round(self.right * w1 / w0))

    def key(self) -> str:
        """A short text for cache keys ('' when there is nothing to crop)."""
        return "" if self.none else f"{self.top},{self.bottom},{self.left},{self.right}"

    def to_dict(self) -> dict:
        return {"top": self.top, "bottom": self.bottom, "left": self.left, "right": self.right}


def _luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _leading(bar: np.ndarray) -> int:
    """How many entries, from index 0, are True in a row."""
    off = np.flatnonzero(~bar)
    return int(off[0]) if off.size else len(bar)


def detect_borders(frames: np.ndarray, *, dark: float = DARK, flat: float = FLAT, agree: float = AGREE,
                   max_side: float = MAX_SIDE) -> Borders:
    """The constant bars of a video from frames sampled across it ((T, H, W, 3) uint8). Frames without content
    (all dark: a fade, a black title card) are ignored; without any content frame nothing is cropped."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        return Borders()
    y = _luma(frames)  # (T, H, W)
    content = y.reshape(len(y), -1).mean(axis=1) > dark
    if not content.any():
        return Borders()
    y = y[content]
    h, w = y.shape[1:]
    row_bar = ((y.mean(axis=2) <= dark) & (y.std(axis=2) <= flat)).mean(axis=0) >= agree  # (H,)
    col_bar = ((y.mean(axis=1) <= dark) & (y.std(axis=1) <= flat)).mean(axis=0) >= agree  # (W,)
    sides = [_leading(row_bar), _leading(row_bar[::-1]), _leading(col_bar), _leading(col_bar[::-1])]
    limits = [int(max_side * h)] * 2 + [int(max_side * w)] * 2
    top, bottom, left, right = (s if MIN_BAR <= s <= lim else 0 for s, lim in zip(sides, limits, strict=True))
    return Borders(top, bottom, left, right)
