"""The augmentation view: a video path in, CVRL / FAME / motion views (and their figure) out.

Reads a bounded stretch of the video (`max_frames` decoded frames from `start`, shorter side `short_side`)
and runs `backends.analysis.augment.augment_frames` on it, deterministically in `seed`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import plotly.graph_objects as go

from backends.analysis.augment import AugmentViewResult, augment_frames
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig
from backends.figures.augment import augment_figure
from backends.io.video import read_frames


def augment_view(
    video_path: str | Path,
    method: str = "cvrl",
    seed: int = 0,
    *,
    config: CvrlConfig | None = None,
    enabled: Collection[str] = AUGMENTATIONS,
    force: bool = False,
    inconsistent: bool = False,
    background_path: str | Path | None = None,
    start: float = 0.0,
    max_frames: int = 240,
    short_side: int = 256,
) -> tuple[AugmentViewResult, go.Figure]:
    """Read a video and run the augmentation view; returns (AugmentViewResult, plotly Figure).

    Only `max_frames` frames from `start` seconds are read, resized to a shorter side of
    `short_side` pixels, so a long video stays cheap; every decoded frame is kept (native rate).
    """

    path = Path(video_path)
    frames, _ = read_frames(path, fps=None, start=start, max_frames=max_frames, size=short_side)
    background = None
    if background_path is not None:
        background, _ = read_frames(Path(background_path), fps=None, start=0.0,
                                    max_frames=max_frames, size=short_side)
    result = augment_frames(
        frames, method, seed, config=config, enabled=enabled, force=force, inconsistent=inconsistent,
        background_frames=background,
        video_info={"name": path.name, "start": float(start)},
    )
    return result, augment_figure(result)
