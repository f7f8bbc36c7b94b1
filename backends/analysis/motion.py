"""Motion views of a clip: temporal gradient (frame differences) and dense Farneback optical flow
(docs/methods/motion-views.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np

from backends.analysis.clips import AugmentError, check_frames


@dataclass
class TemporalGradient:
    """Frame differences x_(t+1) - x_t and a magnitude image for display."""

    diff: np.ndarray  # (T-1, H, W, 3) int16, signed
    images: np.ndarray  # (T-1, H, W, 3) uint8: |diff| scaled by the clip's 99th percentile
    scale: float  # the 99th percentile of |diff| used for display

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": int(self.diff.shape[0]),
            "mean_abs": round(float(np.abs(self.diff).mean()), 4),
            "display_scale": round(self.scale, 4),
        }


def temporal_gradient(frames: np.ndarray) -> TemporalGradient:
    """Temporal gradient (MCL/TCLR motion view): consecutive frame differences."""
    frames = check_frames(frames)
    if len(frames) < 2:
        raise AugmentError("a temporal gradient needs at least 2 frames.")
    diff = np.diff(frames.astype(np.int16), axis=0)
    mag = np.abs(diff)
    scale = max(float(np.percentile(mag, 99)), 1.0)
    images = np.clip(mag * (255.0 / scale), 0, 255).astype(np.uint8)
    return TemporalGradient(diff, images, scale)


@dataclass
class FlowResult:
    """Dense Farneback optical flow between consecutive frames, with HSV colour coding."""

    flow: np.ndarray  # (T-1, H, W, 2) float32, (dx, dy) in pixels
    images: np.ndarray  # (T-1, H, W, 3) uint8 RGB: hue = direction, value = magnitude
    max_magnitude: float  # magnitude mapped to full brightness (the clip's 99th percentile)

    def to_dict(self) -> dict[str, Any]:
        mag = np.linalg.norm(self.flow, axis=-1)
        return {
            "frames": int(self.flow.shape[0]),
            "mean_magnitude": round(float(mag.mean()), 4),
            "display_max_magnitude": round(self.max_magnitude, 4),
        }


def flow_to_rgb(flow: np.ndarray, max_magnitude: float) -> np.ndarray:
    """Colour-code flow (..., H, W, 2): hue = direction, saturation 1, value = magnitude / max."""
    mag = np.linalg.norm(flow, axis=-1)
    ang = np.degrees(np.arctan2(flow[..., 1], flow[..., 0])) % 360.0
    hsv = np.empty((*flow.shape[:-1], 3), dtype=np.uint8)
    hsv[..., 0] = np.rint(ang / 2).astype(np.uint8) % 180  # OpenCV uint8 hue is degrees / 2
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max(max_magnitude, 1e-6) * 255, 0, 255).astype(np.uint8)
    shape = hsv.shape
    rgb = cv2.cvtColor(hsv.reshape(-1, shape[-2], 3), cv2.COLOR_HSV2RGB)
    return np.asarray(rgb).reshape(shape)


def farneback_flow(frames: np.ndarray) -> FlowResult:
    """Dense optical flow (OpenCV Farneback) between consecutive frames, colour coded."""
    frames = check_frames(frames)
    if len(frames) < 2:
        raise AugmentError("optical flow needs at least 2 frames.")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = np.stack([
        # OpenCV allocates the output flow when given None; older stubs do not say so (hence the cast)
        cast(Any, cv2).calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                     iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        for a, b in zip(gray[:-1], gray[1:])
    ]).astype(np.float32)
    max_mag = max(float(np.percentile(np.linalg.norm(flow, axis=-1), 99)), 1e-3)
    return FlowResult(flow, flow_to_rgb(flow, max_mag), max_mag)


def flow_colour_wheel(size: int = 64) -> np.ndarray:
    """The legend of `flow_to_rgb`: each pixel's colour for a flow pointing from the centre to it."""
    r = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(r, r)
    wheel = flow_to_rgb(np.stack([xx, yy], axis=-1), 1.0)
    wheel[np.hypot(xx, yy) > 1] = 255
    return wheel
