"""The augmentation view: a video path in, CVRL / FAME / motion views (and their figure) out.

Reads a bounded stretch of the video (`max_frames` decoded frames from `start`, shorter side `short_side`)
and runs `backends.analysis.augment.augment_frames` on it, deterministically in `seed`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from backends.analysis.augment import AugmentViewResult, augment_frames
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig
from backends.core.errors import CheckpointError
from backends.figures.augment import augment_figure
from backends.io.video import read_frames
from backends.models.video import SAFETENSORS_SUFFIX, read_video_config


def training_augmentation(encoder: str | None) -> tuple[CvrlConfig, float] | None:
    """The CVRL settings and the decode rate a `video:` checkpoint was trained with (`momentlens train cvrl`
    saves them in its JSON config); None for any other encoder. Reads the config only, not the weights."""
    if not encoder or not encoder.startswith("video:") or not encoder.endswith(SAFETENSORS_SUFFIX):
        return None
    path = Path(encoder.split(":", 1)[1]).expanduser()
    aug = dict(read_video_config(path).get("augmentation") or {})
    saved = aug.get("cvrl")
    if not isinstance(saved, dict):
        return None
    known = set(CvrlConfig.__dataclass_fields__)
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
    try:
        return CvrlConfig(**kw), float(aug.get("decode_fps") or 8.0)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path.name}: its augmentation config does not read ({err}).") from None


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
    encoder: str | None = None,
) -> tuple[AugmentViewResult, go.Figure]:
    """Read a video and run the augmentation view; returns (AugmentViewResult, plotly Figure).

    Only `max_frames` frames from `start` seconds are read, resized to a shorter side of
    `short_side` pixels, so a long video stays cheap; every decoded frame is kept (native rate).
    `encoder` naming a trained `video:` checkpoint shows the augmentation it was trained with: its CVRL
    settings (crop size, clip length, stride, ...) replace `config`, and frames are read at its decode rate.
    """

    path = Path(video_path)
    fps = None
    trained = training_augmentation(encoder)
    if trained is not None:
        config, fps = trained
    frames, _ = read_frames(path, fps=fps, start=start, max_frames=max_frames, size=short_side)
    background = None
    if background_path is not None:
        background, _ = read_frames(Path(background_path), fps=fps, start=0.0,
                                    max_frames=max_frames, size=short_side)
    result = augment_frames(
        frames, method, seed, config=config, enabled=enabled, force=force, inconsistent=inconsistent,
        background_frames=background,
        video_info={"name": path.name, "start": float(start),
                    **({"augmentation_of": encoder, "decode_fps": fps} if trained is not None else {})},
    )
    return result, augment_figure(result)
