"""Frames that carry no content: black, white or blank (one colour), faded (a fade transition's dark or washed-out
frames) and heavily blurred ones.

Such frames match every query about equally, so a zero-shot scorer lets them win (the black first frame of
opencv-doc's Megamind.avi was the #1 moment for every query). They are found once per video from three numbers
per sampled frame, measured while the frames are encoded and cached with the features (`frame_stats`), and the
rule (`content_free`) reads them at query time, so it can change without encoding again:

- blank: every colour channel's standard deviation below BLANK_STD (0-255 scale) -- black, white, one colour;
- faded: contrast below FADE_RATIO of the video's median contrast (a fade to or from black or white keeps the
  picture's structure at a fraction of its contrast; the same frame scaled by 0.3 measured 0.3 of it);
- blurred: variance of the Laplacian below BLUR_LAPLACIAN (Gaussian blur sigma 8 on 640 px footage measured
  4-9; the sharpest real frames of the shared and package clips 200-1700, their minimum 213).

All three are measured on the frame resized to STATS_WIDTH px wide, so they do not depend on the encoder's
input size.

>>> stats = frame_stats(frames)          # (T, 3): mean luma, contrast, Laplacian variance
>>> empty, why = content_free(stats)     # (T,) bool, and "black" / "blank" / "fade" / "blur" / ""
"""

from __future__ import annotations

import cv2
import numpy as np

STATS_WIDTH = 128
BLANK_STD = 6.0
FADE_RATIO = 0.25
BLUR_LAPLACIAN = 15.0
DARK = 40.0  # a blank frame's mean luma below this is called "black", above 215 "white"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def frame_stats(frames: np.ndarray) -> np.ndarray:
    """(T, 3) float32 per frame of (T, H, W, 3) uint8 RGB frames: mean luma, contrast (the largest standard
    deviation of the three colour channels) and the variance of the luma's Laplacian, at STATS_WIDTH px wide."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    out = np.zeros((len(frames), 3), np.float32)
    for i, rgb in enumerate(frames):
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (STATS_WIDTH, max(1, round(h * STATS_WIDTH / max(w, 1)))),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        luma = small @ LUMA
        out[i] = (luma.mean(), small.reshape(-1, 3).std(axis=0).max(), cv2.Laplacian(luma, cv2.CV_32F).var())
    return out


def content_free(stats: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(T,) bool: which frames carry no content, and for each the reason ("black", "white", "blank", "fade",
    "blur") or "" for a frame with content. The contrast of a fade is judged against the video's median."""
    stats = np.asarray(stats, np.float32).reshape(-1, 3)
    if len(stats) == 0:
        return np.zeros(0, bool), []
    luma, contrast, sharp = stats[:, 0], stats[:, 1], stats[:, 2]
    typical = float(np.median(contrast))
    reasons = []
    for y, c, s in zip(luma, contrast, sharp):
        if c < BLANK_STD:
            reasons.append("black" if y < DARK else "white" if y > 255 - DARK else "blank")
        elif c < FADE_RATIO * typical:
            reasons.append("fade")
        elif s < BLUR_LAPLACIAN:
            reasons.append("blur")
        else:
            reasons.append("")
    return np.array([bool(r) for r in reasons]), reasons


def spans(times: np.ndarray, mask: np.ndarray, reasons: list[str] | None = None,
          duration: float | None = None) -> list[dict]:
    """Runs of content-free samples as `{"start", "end", "reason"}` in seconds (a sample stands for the half
    intervals to its neighbours; the last one up to `duration` when given), for the UIs and the JSON output."""
    times = np.asarray(times, np.float64)
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    last = max(float(times[-1]), float(duration)) if duration is not None else float(times[-1])
    edges = np.concatenate([[times[0]], (times[1:] + times[:-1]) / 2, [last]])
    out = []
    i = 0
    while i < len(mask):
        if not mask[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(mask) and mask[j + 1]:
            j += 1
        why = sorted({reasons[k] for k in range(i, j + 1)}) if reasons else []
        out.append({"start": round(float(edges[i]), 3), "end": round(float(edges[j + 1]), 3), "reason": "+".join(why)})
        i = j + 1
    return out
