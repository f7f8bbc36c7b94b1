"""Browser playback: make any decodable upload playable in a browser's <video> element.

Chromium plays H.264 (8-bit 4:2:0) in mp4 and VP8/VP9/AV1 in webm. Anything else (avi with MPEG-4 Part 2,
cinepak, HEVC, 10-bit or 4:4:4 H.264, ...) is transcoded once with PyAV to H.264-in-mp4 in the cache,
keyed by the file's content hash, so re-opening the same clip is instant. The timeline is kept: the copy
has the source's frame rate, so a moment at t seconds is at t seconds in both files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from backends.core.paths import cache_dir
from backends.io.cache import file_content_hash
from backends.io.video import (
    DEFAULT_MAX_DURATION,
    VideoReader,
    probe,
    resolve_video_path,
    write_video,
)

# (container family, codec) pairs Chromium plays without help; PyAV names the mp4 family "mov,mp4,...".
PLAYABLE = {("mp4", "h264"), ("webm", "vp9"), ("webm", "vp8"), ("webm", "av1"), ("mp4", "av1")}
PLAYABLE_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}
MAX_SHORT_SIDE = 720  # transcoded copies are at most 720p: playback only, analyses read the original


def _container_family(format_name: str, suffix: str) -> str:
    names = set(format_name.split(","))
    if "webm" in names or ("matroska" in names and suffix == ".webm"):
        return "webm"
    if "mp4" in names and suffix in (".mp4", ".m4v", ".mov"):
        return "mp4"
    return format_name


def is_browser_playable(path: str | os.PathLike) -> bool:
    """True when the file's container, codec and pixel format play in Chromium as they are."""
    p = resolve_video_path(path)
    probe(p)  # typed, one-sentence errors for files that are not usable videos
    with av.open(str(p)) as container:
        stream = container.streams.video[0]
        family = _container_family(container.format.name, p.suffix.lower())
        codec = stream.codec_context.name
        pix_fmt = stream.codec_context.pix_fmt or ""
    return (family, codec) in PLAYABLE and pix_fmt in PLAYABLE_PIXEL_FORMATS


def playable_path(path: str | os.PathLike, max_duration: float = DEFAULT_MAX_DURATION) -> Path:
    """A browser-playable file with the same content: `path` itself (gunzipped if needed) or a cached
    H.264 mp4 transcode."""
    src = resolve_video_path(path)
    if is_browser_playable(src):
        return src
    # one folder per content, the copy named after the user's file (it shows in summaries and exports)
    out = cache_dir() / "playable" / file_content_hash(src) / f"{src.name.split('.')[0] or 'video'}.mp4"
    if out.is_file():
        return out
    reader = VideoReader(src, fps=None, max_duration=max_duration)
    info = reader.info
    short = min(info.width, info.height) or MAX_SHORT_SIDE
    if short > MAX_SHORT_SIDE:
        reader.size = MAX_SHORT_SIDE
    fps = info.fps if info.fps and info.fps > 0 else 25.0
    write_video(out, constant_rate_frames(reader, fps), fps=fps)  # atomic: temp file, then rename
    return out


def constant_rate_frames(timed_frames: Iterable[tuple[float, np.ndarray]], fps: float) -> Iterator[np.ndarray]:
    """Frames at `fps` from (time, frame) pairs with possibly sparse timestamps: each frame is held until the
    next one's time, so output frame k shows what the source shows at k / fps seconds."""
    slot = 0
    previous = None
    for t, rgb in timed_frames:
        if previous is not None:
            while slot / fps < t - 0.5 / fps:
                yield previous
                slot += 1
        previous = rgb
    if previous is not None:
        yield previous
