"""Streaming video decoding with PyAV: frames sampled by timestamp, real durations, typed errors.

Frames are decoded one at a time and only the sampled ones are converted to RGB, so memory stays flat
in the video's length. Sampling follows the frames' presentation timestamps, never the container's
declared frame count (opencv-doc's tree.avi claims 444 frames and decodes 68).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np

from backends.core.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoNotFoundError,
    VideoTooLongError,
    WindowError,
)
from backends.core.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MAX_DURATION = 2 * 3600.0  # seconds; longer videos are refused unless the caller raises it
SUPPORTED_FPS = (0.5, 1.0, 2.0, 4.0)  # the sampling rates offered in the UIs (any positive value works)

# Leading bytes of containers we know: a file that starts like one of these but will not open is
# "corrupt or truncated"; any other unreadable file is "not a video".
_CONTAINER_MAGIC = (b"ftyp", b"RIFF", b"\x1a\x45\xdf\xa3", b"OggS", b"FLV", b"\x00\x00\x01\xba", b"moov", b"mdat", b"free")


# The one list of video file extensions (folders are scanned for these; annotations' VIDs are tried with them).
# A gzip-compressed clip (`clip.mp4.gz`, as opencv-doc ships them) counts too: it is unpacked into the cache once.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")


def is_video_name(path: str | os.PathLike) -> bool:
    """Whether a file name ends in a video extension (optionally followed by `.gz`)."""
    name = Path(path).name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(VIDEO_EXTENSIONS)


def list_videos(folder: str | os.PathLike, *, recursive: bool = False,
                unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """The video files of a folder (sorted; hidden files skipped), or VideoNotFoundError with one sentence. An entry
    that cannot be looked at (no permission) is passed over, and listed in `unreadable` as (path, reason)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VideoNotFoundError(f"{root} is not a folder of videos; pass a folder that holds video files.")
    def passed_over(path: Path, err: OSError) -> None:
        if unreadable is not None:
            unreadable.append((str(path), f"{path.name} cannot be looked at ({err.strerror or err}); it was passed over."))

    def walk_error(err: OSError) -> None:  # a folder that vanished mid-walk (/proc, a temp folder) is no news
        if not isinstance(err, FileNotFoundError):
            passed_over(Path(err.filename or "?"), err)

    # os.walk, not Path.rglob: rglob (3.11) lets any error but PermissionError out of the walk
    files = ((Path(top) / name for top, _, names in os.walk(root, onerror=walk_error) for name in names)
             if recursive else root.iterdir())
    videos = []
    for p in files:
        if p.name.startswith(".") or not is_video_name(p):
            continue
        try:
            if p.is_file():
                videos.append(p)
        except OSError as err:  # e.g. a link into a folder this user may not read
            passed_over(p, err)
    videos.sort()
    if not videos:
        raise VideoNotFoundError(f"{root} holds no videos ({', '.join(VIDEO_EXTENSIONS)}, or any of them .gz).")
    return videos


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (duration may be refined by decoding)."""

    path: Path
    duration: float  # seconds, from the container or stream header
    fps: float  # native average frame rate
    width: int
    height: int
    codec: str
    declared_frames: int  # the header's frame count; 0 if unknown (never trusted for sampling)


def _looks_like_container(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(m in head for m in _CONTAINER_MAGIC)


def resolve_video_path(path: str | os.PathLike) -> Path:
    """Check that `path` is a readable non-empty file; gunzip `*.gz` clips into the cache once."""
    if not str(path).strip():  # Path("") is ".", the working folder: say what is really wrong
        raise VideoNotFoundError("No video was chosen: pick a sample clip, type a video's path or upload one.")
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoNotFoundError(f"No such video file: {p}; check the path.")
    if not p.is_file():
        raise NotAVideoError(f"{p} is a folder, not a video file; pick a video file inside it.")
    if p.stat().st_size == 0:
        raise EmptyVideoError(f"{p.name} is empty (0 bytes); re-export or re-download the video.")
    if p.suffix == ".gz":
        return _gunzipped(p)
    return p


def _gunzipped(p: Path) -> Path:

    key = hashlib.sha1(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_dir() / "gunzip" / f"{key}-{p.stem}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".part")
        try:
            with gzip.open(p, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, out)
        except (OSError, EOFError) as err:
            Path(tmp).unlink(missing_ok=True)
            raise CorruptVideoError(f"{p.name} is not a readable gzip file ({err}); re-download it.") from err
    return out


def _open(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), mode="r")
    except av.error.FFmpegError as err:
        if _looks_like_container(p):
            raise CorruptVideoError(
                f"{p.name} looks like a video container but cannot be read (truncated or corrupt); "
                "re-export or re-download it."
            ) from err
        raise NotAVideoError(f"{p.name} is not a video file that can be decoded; use an mp4, avi, webm or mov file.") from err


# FFmpeg demuxers of still images: a PNG or JPEG renamed .mp4 opens as a one-frame "video" through them
_IMAGE_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "gif", "webp_pipe", "tiff_pipe", "jpegxl_pipe",
                   "apng", "ico", "psd_pipe", "qoi_pipe", "svg_pipe", "pgm_pipe", "ppm_pipe", "pam_pipe")
# FFmpeg plays any text file named .txt (tty: ANSI art) and a few text-art formats as "video"
_TEXT_DEMUXERS = ("tty", "bintext", "xbin", "adf", "idf")


def _video_stream(container: Any, p: Path):
    names = set(str(container.format.name).split(","))
    if names & set(_IMAGE_DEMUXERS) or any(n.endswith("_pipe") for n in names):
        raise NotAVideoError(f"{p.name} is a still image, not a video; use an mp4, avi, webm or mov file.")
    if names & set(_TEXT_DEMUXERS):
        raise NotAVideoError(f"{p.name} is a text file, not a video; use an mp4, avi, webm or mov file.")
    if not container.streams.video:
        if container.streams.audio:
            raise NoVideoStreamError(f"{p.name} is an audio-only file; pick a file that contains video.")
        if container.streams.subtitles:
            raise NotAVideoError(f"{p.name} is a subtitle or text file, not a video; use an mp4, avi, webm or mov file.")
        raise EmptyVideoError(f"{p.name} contains no video frames (a zero-length video); pick another file.")
    return container.streams.video[0]


def _stream_duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def probe(path: str | os.PathLike, max_duration: float = DEFAULT_MAX_DURATION) -> VideoInfo:
    """Read a video's header; raise a typed error with one sentence if it cannot be used."""
    p = resolve_video_path(path)
    with _open(p) as container:
        stream = _video_stream(container, p)
        duration = _stream_duration(container, stream)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        info = VideoInfo(
            path=p,
            duration=duration,
            fps=fps,
            width=int(stream.codec_context.width or 0),
            height=int(stream.codec_context.height or 0),
            codec=stream.codec_context.name,
            declared_frames=int(stream.frames or 0),
        )
    _check_length(info.duration, max_duration, p)
    return info


def _check_length(duration: float, max_duration: float, p: Path) -> None:
    if max_duration and duration > max_duration:
        raise VideoTooLongError(
            f"{p.name} lasts {_hms(duration)}, longer than the limit of {_hms(max_duration)}; "
            "trim it or raise the limit (--max-duration)."
        )


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _target_size(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """`size` is None (keep), an int (shorter side, aspect kept) or a (width, height) pair."""
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    scale = size / min(width, height)
    # even sizes keep swscale fast and encoders happy
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class VideoReader:
    """Streams sampled frames of one video; after iteration `duration` holds the decoded length.

    >>> reader = VideoReader("clip.mp4", fps=1.0, size=256)
    >>> for t, rgb in reader: ...
    >>> reader.duration
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | None = 1.0,
        *,
        start: float = 0.0,
        end: float | None = None,
        size: int | tuple[int, int] | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
        crop: tuple[int, int, int, int] | None = None,
    ):
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.info = probe(path, max_duration=max_duration)
        self.fps = fps
        self.start = float(start)
        self.end = end
        self.size = size
        self.max_duration = max_duration
        self.crop = crop  # (top, bottom, left, right) pixels of the original frame dropped before resizing
        self.duration: float | None = None  # real decoded duration, set when the stream ends
        self.frames_decoded = 0

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        p = self.info.path
        if self.max_duration and self.start > self.max_duration:
            return  # no frame can lie there (a longer video is refused); seeking 1e20 s would overflow
        with _open(p) as container:
            stream = _video_stream(container, p)
            stream.thread_type = "AUTO"  # frame-threaded decoding
            if self.fps is not None and self.info.fps >= 4 * self.fps:
                # Sparse sampling: skip frames nothing refers to (B-frames). A sample then lands on the first
                # reference frame at or after its instant (typically <= 2 native frames late; its true
                # timestamp is returned) and decoding costs about 40% less.
                stream.codec_context.skip_frame = "NONREF"
            t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            step = None if self.fps is None else 1.0 / self.fps
            next_t = self.start
            frame_dur = 1.0 / self.info.fps if self.info.fps > 0 else 0.0
            last_t = None
            crop = self.crop if self.crop and any(self.crop) else None
            if crop is not None:
                top, bottom, left, right = crop
                cw, ch = self.info.width - left - right, self.info.height - top - bottom
                wh = _target_size(cw, ch, self.size)
            else:
                wh = _target_size(self.info.width, self.info.height, self.size)
            if self.start > 0:
                try:
                    container.seek(int(self.start / stream.time_base) + (stream.start_time or 0), stream=stream)
                except (av.error.FFmpegError, OverflowError):
                    pass  # fall back to decoding from the start
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base) - t0
                    self.frames_decoded += 1
                    last_t = t
                    if self.max_duration and t > self.max_duration:
                        _check_length(t, self.max_duration, p)
                    if t < self.start - 1e-6:
                        continue
                    if self.end is not None and t >= self.end:
                        break
                    # keep the first frame at or after each sampling instant (half a frame tolerance)
                    if step is not None and t + frame_dur / 2 < next_t:
                        continue
                    if crop is not None:  # the content part, then the requested size
                        full = frame.to_ndarray(format="rgb24")
                        rgb = full[top : full.shape[0] - bottom, left : full.shape[1] - right]
                        if wh is not None and (rgb.shape[1], rgb.shape[0]) != wh:
                            rgb = cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA)
                        rgb = np.ascontiguousarray(rgb)
                    elif wh is not None:
                        rgb = frame.to_ndarray(format="rgb24", width=wh[0], height=wh[1])
                    else:
                        rgb = frame.to_ndarray(format="rgb24")
                    if step is not None:
                        next_t += step * max(1, math.floor((t + frame_dur / 2 - next_t) / step) + 1)
                    yield t, rgb
            except av.error.FFmpegError as err:
                where = f" at {last_t:.1f} s" if last_t is not None else ""
                raise CorruptVideoError(
                    f"decoding {p.name} failed{where}: the file is truncated or corrupt; re-export or re-download it."
                ) from err
        if last_t is None:
            raise EmptyVideoError(f"{p.name} contains no decodable video frames; pick another file.")
        if self.end is None:
            self.duration = last_t + frame_dur
            # a file cut short keeps its header: decoding then stops well before the declared end
            if self.info.duration > 0 and self.duration < 0.9 * self.info.duration - 1.0:
                raise CorruptVideoError(
                    f"{p.name} stops at {self.duration:.1f} s although its header says {self.info.duration:.1f} s: "
                    "the file is truncated or its header is wrong; re-export or re-download it."
                )


def sample_frames_by_seek(path: str | os.PathLike, count: int = 12, size: int | None = 160,
                          max_duration: float = DEFAULT_MAX_DURATION) -> np.ndarray:
    """About `count` frames spread over the whole video, cheaply: a seek to each instant and the first frame
    decoded there (a keyframe). For whole-video statistics such as constant borders; (N, H, W, 3) uint8."""
    info = probe(path, max_duration=max_duration)
    wh = _target_size(info.width, info.height, size)
    out: list[np.ndarray] = []
    with _open(info.path) as container:
        stream = _video_stream(container, info.path)
        span = info.duration if info.duration > 0 else 0.0
        for i in range(count):
            t = span * (i + 0.5) / count
            try:
                container.seek(int(t / stream.time_base) + (stream.start_time or 0), stream=stream)
                frame = next(container.decode(stream), None)
            except (av.error.FFmpegError, StopIteration):
                continue
            if frame is not None:
                out.append(frame.to_ndarray(format="rgb24", width=wh[0], height=wh[1]) if wh else
                           frame.to_ndarray(format="rgb24"))
            if span == 0:
                break
    if not out:
        raise EmptyVideoError(f"{Path(info.path).name} contains no decodable video frames; pick another file.")
    return np.stack(out)


def read_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    start: float = 0.0,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    end: float | None = None,
    max_duration: float = DEFAULT_MAX_DURATION,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode frames into memory: `(frames uint8 RGB (T,H,W,3), times float64 (T,))`.

    For short excerpts (augmentations, Grad-CAM, thumbnails); whole videos go through `VideoReader`.
    `fps=None` keeps every frame at the native rate.
    """
    if not 0 <= start < math.inf:  # also NaN
        raise WindowError(f"the start time must be a number of seconds from 0 on, got {start:g}.")
    frames, times = [], []
    reader = VideoReader(path, fps=fps, start=start, end=end, size=size, max_duration=max_duration)
    for t, rgb in reader:
        frames.append(rgb)
        times.append(t)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:  # a start at or past the end (or an end before the start)
        length = reader.duration or reader.info.duration
        def secs(x: float) -> str:
            return f"{x:.2f}" if abs(x) < 1e6 else f"{x:.3g}"

        span = f"from {secs(start)} s" + (f" to {secs(end)} s" if end is not None else " on")
        raise WindowError(f"{Path(path).name} has no frame {span} (it is {length:.1f} s long); pick a time inside "
                          "the video.")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def decoded_duration(path: str | os.PathLike, max_duration: float = DEFAULT_MAX_DURATION) -> float:
    """The real duration, found by decoding to the end (headers can be wrong)."""
    reader = VideoReader(path, fps=1.0, size=(32, 32), max_duration=max_duration)
    for _ in reader:
        pass
    return float(reader.duration or 0.0)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264") -> Path:
    """Write RGB frames as a browser-playable video (H.264 in mp4, or VP9 in webm) with PyAV."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=out.suffix)
    os.close(fd)
    try:
        options = {"movflags": "+faststart"} if out.suffix in (".mp4", ".mov") else {}
        with av.open(tmp, mode="w", options=options) as container:
            stream: av.VideoStream | None = None
            for rgb in frames:
                if stream is None:
                    h, w = rgb.shape[:2]
                    stream = cast(av.VideoStream, container.add_stream(codec, rate=_rate(fps)))  # a video codec
                    # yuv420p needs even sides: round up, repeating the last row/column (a 1 x 1 clip still plays)
                    stream.width, stream.height = max(2, w + w % 2), max(2, h + h % 2)
                    stream.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        stream.options = {"preset": "veryfast", "crf": "23"}
                pad_h, pad_w = stream.height - rgb.shape[0], stream.width - rgb.shape[1]
                if pad_h > 0 or pad_w > 0:
                    rgb = np.pad(rgb, ((0, max(pad_h, 0)), (0, max(pad_w, 0)), (0, 0)), mode="edge")
                rgb = np.ascontiguousarray(rgb[: stream.height, : stream.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _rate(fps: float):

    return Fraction(fps).limit_denominator(1001)
