"""The self-similarity view: a video path in, TSM, boundaries and event proposals (and their figure) out.

`self_similarity_view` encodes the video through the feature cache and calls
`backends.analysis.similarity.similarity_from_features`; `frames_at` fetches the two frames of a clicked cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from backends.analysis.similarity import (
    FEATURE_KINDS,
    KINDS,
    SimilarityError,
    SimilarityResult,
    similarity_from_features,
)
from backends.core.contracts import ProgressFn
from backends.core.errors import WindowError
from backends.encoders.base import Encoder
from backends.features import encode_video
from backends.figures.similarity import similarity_figure
from backends.io.video import VideoReader, probe, read_frames

LAST_FRAME_LOOKBACK = 10.0  # s: how far back a time after the last frame looks for it


def self_similarity_view(
    video_path: str | Path,
    encoder: Encoder | str | None = None,
    kind: str = "repnet",
    fps: float = 1.0,
    progress: ProgressFn | None = None,
    *,
    features: str = "visual",
    cache: bool = True,
    **params: Any,
) -> tuple[SimilarityResult, go.Figure]:
    """Encode a video (cached) and build the self-similarity view: returns (SimilarityResult, plotly Figure).

    `features="visual"` uses the encoder's raw visual features (default), `"joint"` its L2-normalised
    text-frame embedding. Extra keyword arguments go to `similarity_from_features`.
    """

    if kind not in KINDS:
        raise SimilarityError(f"unknown similarity kind {kind!r}; available: {', '.join(KINDS)}.")
    if features not in FEATURE_KINDS:
        raise SimilarityError(f"unknown feature kind {features!r}; available: {', '.join(FEATURE_KINDS)}.")
    feats = encode_video(video_path, encoder, fps=fps, cache=cache, progress=progress)
    x = feats.visual if features == "visual" else feats.features
    result = similarity_from_features(
        x, feats.times, feats.duration, kind, encoder=feats.encoder_id, feature_kind=features,
        fps=feats.fps, video=Path(video_path).name, **params,
    )
    return result, similarity_figure(result)


def frames_at(video_path: str | Path, t1: float, t2: float, size: int | tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The frames at `t1` and `t2` seconds (uint8 RGB) for a clicked TSM cell; `size` as in `read_frames`."""

    def one(t: float) -> np.ndarray:  # a time past the end: read_frames' WindowError says so, with the length
        t = float(t)
        if -0.05 < t < 0:  # a click on the first cell's edge
            t = 0.0
        try:
            frames, _ = read_frames(video_path, fps=None, start=t, max_frames=1, size=size)
        except WindowError:
            if not 0 <= t < probe(video_path).duration:
                raise
            # after the last frame's time but inside the video: that last frame is still the one showing (streamed:
            # only the last one is kept, not seconds of frames)
            last = None
            for _t, rgb in VideoReader(video_path, fps=None, start=max(0.0, t - LAST_FRAME_LOOKBACK), end=t, size=size):
                last = rgb
            if last is None:
                raise
            return last
        return frames[-1]

    return one(t1), one(t2)
