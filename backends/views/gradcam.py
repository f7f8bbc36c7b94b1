"""The Grad-CAM view: a video path and a query in, per-frame heat maps (and their figure) out.

`gradcam_view` samples frames from the video (evenly over [start, end]), runs `gradcam_frames` (the
encoder's image tower through `backends.analysis.gradcam.query_cam`, in batches) and draws the result.

>>> result, fig = gradcam_view("clip.mp4", "a cardboard box", encoder="conse-effnet-minilm", frames=8)
>>> result.maps.shape == result.frames.shape[:3]    # (K, H, W) in [0, 1]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from backends.analysis.gradcam import (
    GradCamError,
    GradCamResult,
    _cam_class,
    frames_to_input,
    map_to_frame,
    query_cam,
)
from backends.core.contracts import ProgressFn, check_query
from backends.core.device import MODEL_LOCK
from backends.core.errors import WindowError
from backends.encoders import Encoder, cached_encoder
from backends.features import borders_to_crop
from backends.figures.gradcam import gradcam_figure
from backends.io.video import probe, read_frames
from backends.retrieval.engine import OutsideVideoError, check_window

DEFAULT_FRAMES = 8  # frames spread over the video (or the chosen window) when none are asked for


def gradcam_frames(
    frames: np.ndarray,
    query: str | None,
    encoder: Encoder | str | None = None,
    *,
    method: str = "gradcam",
    fit: str = "squash",
    batch_size: int = 8,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 RGB frames (T,H,W,3) -> (maps (T,H,W) in [0,1], cosine scores (T,) or None without a query).

    Image encoders take the frames in batches; a video encoder (its `preprocess` returns (1,3,T,S,S))
    takes them as one clip and its 5-D maps come back per frame.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise GradCamError(f"expected RGB frames shaped (T,H,W,3), got {frames.shape}.")
    enc = cached_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder
    text = check_query(query, required=method != "eigencam" and enc.has_text)
    model, layer, reshape = enc.image_model(), enc.target_layer(), enc.reshape_transform()
    model_frames, geometry = frames_to_input(frames, int(enc.input_size), fit, getattr(enc, "input_fit", "crop"))
    if not enc.has_text and method != "eigencam":
        # a clip-only encoder: the target is the clip's own embedding (what makes this clip embed as it does)
        with torch.inference_mode(), MODEL_LOCK:
            text_emb = enc.image_model()(enc.preprocess(model_frames)).float()[0].cpu().numpy()
    else:
        text_emb = enc.encode_text([text])[0] if text else None
    h, w = frames.shape[1:3]
    maps: list[np.ndarray] = []
    scores: list[float] = []
    probe_input = enc.preprocess(model_frames[:1])
    clip_input = probe_input.ndim == 5
    step = len(frames) if clip_input else batch_size
    for i in range(0, len(frames), step):
        if progress is not None:
            progress(i / len(frames), f"Grad-CAM ({method}) on frames {i + 1}-{min(i + step, len(frames))} of {len(frames)}")
        x = enc.preprocess(model_frames[i : i + step])
        cams, sc = query_cam(model, layer, x, text_emb, method, reshape_transform=reshape,
                             target="cosine" if enc.has_text else "projection")
        per_frame = cams.reshape(-1, *cams.shape[-2:])  # (B,T,S,S) clips -> T frame maps
        maps.extend(map_to_frame(c, geometry, h, w) for c in per_frame)
        if sc is not None:
            scores.extend(np.repeat(sc, len(per_frame) // len(sc)))
    if len(maps) != len(frames):
        raise GradCamError(f"the encoder returned {len(maps)} maps for {len(frames)} frames.")
    return np.stack(maps).astype(np.float32), (np.asarray(scores, np.float32) if scores else None)


def sample_frames(video_path: str | os.PathLike, count: int, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames spread evenly over [start, end] (default the whole video): (frames, times)."""
    if count < 1:
        raise GradCamError(f"--frames must be at least 1, got {count}.")
    info = probe(video_path)
    stop = info.duration if end is None else min(end, info.duration)
    span = max(stop - start, 1e-3)
    # one frame at the middle of each of `count` equal parts of [start, stop]
    try:
        frames, times = read_frames(video_path, fps=count / span * 1.0001, start=start + span / (2 * count), end=end)
    except WindowError:  # no frame after the first part's middle (a one-frame clip): the frames the window has
        frames, times = np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0)
    if len(frames) < count:  # more asked than the window has (a low or variable frame rate): every frame it has
        cap = 4 * count
        native, native_times = read_frames(video_path, fps=None, start=start, end=end, max_frames=cap)
        # only when the read reached the window's end: a capped read holds the window's first frames only (a long
        # window with a still gap would get all its frames from its first second)
        if len(frames) < len(native) < cap:
            frames, times = native, native_times
    if len(frames) > count:  # the decoder's sampling grid may add one at the end
        keep = np.linspace(0, len(frames) - 1, count).round().astype(int)
        frames, times = frames[keep], times[keep]
    return frames, times


def sample_clip(video_path: str | os.PathLike, clip_len: int, frame_rate: float, start: float = 0.0,
                end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`clip_len` consecutive frames at `frame_rate`, centred on the middle of [start, end] (a video encoder's
    clip): (frames, times)."""
    info = probe(video_path)
    stop = info.duration if end is None else min(end, info.duration)
    span = clip_len / frame_rate
    first = min(max(0.0, (start + stop) / 2 - span / 2), max(0.0, info.duration - span))
    frames, times = read_frames(video_path, fps=frame_rate, start=first, max_frames=clip_len)
    if len(frames) < clip_len:  # a clip longer than the video repeats its last frame
        pad = clip_len - len(frames)
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        times = np.concatenate([times, np.repeat(times[-1:], pad)])
    return frames, times


def gradcam_view(
    video_path: str | os.PathLike,
    query: str,
    *,
    encoder: Encoder | str | None = None,
    frames: int = DEFAULT_FRAMES,
    method: str = "gradcam",
    opacity: float = 0.5,
    fit: str = "squash",
    start: float = 0.0,
    end: float | None = None,
    progress: ProgressFn | None = None,
    crop_borders: bool | None = None,
) -> tuple[GradCamResult, Any]:
    """Grad-CAM maps of `query` on `frames` frames spread over a video: (GradCamResult, plotly Figure).
    A video encoder (clip_len > 1) gets one clip of its own length and frame rate, centred in [start, end];
    one without a text side ignores the query and weighs the clip's own embedding. The video's constant bars
    (`features.borders_to_crop`) are cropped for the model and get no heat; the overlays show the whole frame
    (`crop_borders=False` keeps the bars in the model's input)."""
    _cam_class(method)
    if not 0.0 <= opacity <= 1.0:
        raise GradCamError(f"opacity must be within [0, 1], got {opacity}.")
    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(encoder)
    text = check_query(query, required=method != "eigencam" and enc.has_text)
    if end is not None or start:
        duration = probe(video_path).duration
        if end is None and start >= duration:  # only a start was given: say so in its terms, not of an END
            raise OutsideVideoError(f"the Grad-CAM start {start:g} s is at or past the end of the video, which lasts "
                                    f"{duration:.2f} s: start earlier.")
        start, end = check_window((start, duration if end is None else end), duration, "the Grad-CAM window (start, end)")
    if progress is not None:
        progress(0.0, f"reading {frames} frames")
    if enc.clip_len > 1:  # a video encoder: one clip as it embeds them, centred in the window
        rgb, times = sample_clip(video_path, enc.clip_len, enc.frame_rate, start, end)
    else:
        rgb, times = sample_frames(video_path, frames, start, end)
    if not enc.has_text:
        text = ""
    borders = borders_to_crop(video_path, crop_borders)
    if borders.none:
        maps, scores = gradcam_frames(rgb, text, enc, method=method, fit=fit, progress=progress)
    else:  # the model sees the content only; the bars of the full-frame maps stay cold
        inner, scores = gradcam_frames(np.ascontiguousarray(borders.crop(rgb)), text, enc, method=method, fit=fit,
                                       progress=progress)
        maps = np.zeros(rgb.shape[:3], np.float32)
        h, w = rgb.shape[1:3]
        maps[:, borders.top : h - borders.bottom, borders.left : w - borders.right] = inner
    extras: dict[str, Any] = {"borders": borders.to_dict()}
    if enc.clip_len > 1:
        extras["clip"] = {"frames": enc.clip_len, "frame_rate": enc.frame_rate}
    if not enc.has_text and method != "eigencam":
        extras["target"] = f"{enc.name} has no text side: the heat shows what drives the clip's own embedding"
        scores = None  # the cosine of a clip with its own embedding is 1 on every frame: nothing to show
    blank = int((maps.reshape(len(maps), -1).max(axis=1) <= 0).sum())
    if blank:  # Grad-CAM keeps only the positive evidence (ReLU of the weighted channels): none is none
        extras["blank"] = (f"{method} found nothing that raises its target on {blank} of {len(maps)} frame"
                           f"{'' if len(maps) == 1 else 's'}, so {'its map is' if blank == 1 else 'their maps are'} "
                           "blank"
                           + ("" if method == "eigencam" else "; gradcam++ or eigencam show where the encoder looks"))
    result = GradCamResult(rgb, maps, times, text, method, enc.id, scores, fit, str(video_path), extras=extras)
    return result, gradcam_figure(result, opacity)
