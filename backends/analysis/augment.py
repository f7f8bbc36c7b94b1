"""The augmentation view's computation: one method, or all of them, on a video's frames.

`augment_frames` runs CVRL (`cvrl`), FAME (`fame`), the temporal gradient and optical flow (`motion`) on
uint8 RGB frames (T, H, W, 3), deterministically in `seed`: FAME and the motion views take CVRL's first
temporally sampled clip, centre-cropped to the crop size. `backends.views.augment.augment_view` reads the
video; `backends.figures.augment` draws the result.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from backends.analysis.clips import AugmentError, check_frames, square_clip
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig, CvrlResult, cvrl_two_views, sample_temporal_gap, seed_streams
from backends.analysis.fame import FameResult, fame
from backends.analysis.motion import FlowResult, TemporalGradient, farneback_flow, temporal_gradient

METHODS = ("cvrl", "fame", "tgrad", "flow", "all")


@dataclass
class AugmentViewResult:
    """Everything one run of the augmentation view computed; `to_dict()` is the `--json` output."""

    method: str
    seed: int
    video: dict[str, Any]  # name, frames, height, width (no paths, no times)
    config: CvrlConfig
    enabled: list[str]
    force: bool
    cvrl: CvrlResult | None = None
    fame: FameResult | None = None
    tgrad: TemporalGradient | None = None
    flow: FlowResult | None = None
    motion_clip: np.ndarray | None = field(default=None, repr=False)  # square clip for tgrad/flow

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "seed": self.seed,
            "video": self.video,
            "config": asdict(self.config),
            "enabled": self.enabled,
            "force": self.force,
        }
        for name in ("cvrl", "fame", "tgrad", "flow"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict()
        return out


def _methods(method: str) -> tuple[str, ...]:
    if method not in METHODS:
        raise AugmentError(f"unknown method {method!r}; available: {', '.join(METHODS)}.")
    return METHODS[:-1] if method == "all" else (method,)


def augment_frames(
    frames: np.ndarray,
    method: str = "cvrl",
    seed: int = 0,
    *,
    config: CvrlConfig | None = None,
    enabled: Collection[str] = AUGMENTATIONS,
    force: bool = False,
    inconsistent: bool = False,
    background_frames: np.ndarray | None = None,
    video_info: dict[str, Any] | None = None,
) -> AugmentViewResult:
    """Run `method` (cvrl, fame, tgrad, flow or all) on a video's frames, deterministically in `seed`.

    The clips of FAME and the motion views are CVRL's two temporally sampled clips, centre-cropped
    to the crop size; FAME's background is `background_frames` (another video) when given, else
    the second clip.
    """
    frames = check_frames(frames)
    cfg = config or CvrlConfig()
    methods = _methods(method)
    info = dict(video_info or {})
    info.update(frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]))
    result = AugmentViewResult(method, int(seed), info, cfg, [a for a in AUGMENTATIONS if a in enabled], force)
    if "cvrl" in methods:
        result.cvrl = cvrl_two_views(frames, seed, config=cfg, enabled=enabled, force=force, inconsistent=inconsistent)
    if any(m in methods for m in ("fame", "tgrad", "flow")):
        rng_time = seed_streams(seed, 1)[0]  # the same first stream as cvrl_two_views: same clips
        temporal = sample_temporal_gap(rng_time, len(frames), cfg.num_frames, cfg.stride, cfg.gap_power)
        clip = square_clip(frames[temporal.clip_indices(0)], cfg.crop_size)
        result.motion_clip = clip
        if "fame" in methods:
            if background_frames is not None:
                bg = check_frames(background_frames)
                idx = np.minimum(cfg.stride * np.arange(cfg.num_frames), len(bg) - 1)
                other = square_clip(bg[idx], cfg.crop_size)
            else:
                other = square_clip(frames[temporal.clip_indices(1)], cfg.crop_size)
            result.fame = fame(clip, other)
        if "tgrad" in methods:
            result.tgrad = temporal_gradient(clip)
        if "flow" in methods:
            result.flow = farneback_flow(clip)
    return result
