"""Video -> frame features: streaming decode overlapped with batched inference, cached on disk.

Constant borders (letterbox / pillarbox bars) are detected once per video and cropped before the encoder
(`crop_borders`, default CROP_BORDERS; `MOMENTLENS_CROP_BORDERS=0` turns it off); the crop is part of the
cache key. `benchmarks/letterbox.py` measures what it does to retrieval."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backends.analysis.borders import AGREE, DARK, FLAT, MAX_SIDE, MIN_BAR, Borders, detect_borders
from backends.analysis.content import content_free, frame_stats
from backends.core.contracts import ProgressFn
from backends.core.errors import CancelledError, VideoError
from backends.core.paths import cache_dir
from backends.encoders import Encoder, cached_encoder
from backends.io.atomic import write_bytes_whole
from backends.io.cache import CacheKey, FeatureCache, file_content_hash
from backends.io.video import DEFAULT_MAX_DURATION, VideoReader, probe, resolve_video_path, sample_frames_by_seek

log = logging.getLogger(__name__)

CROP_BORDERS = os.environ.get("MOMENTLENS_CROP_BORDERS", "1") not in ("0", "false", "no")
_BORDERS: dict[str, Borders] = {}  # content hash -> borders (a cache hit must not seek the video again)
_BORDERS_LOCK = threading.Lock()
BORDER_SAMPLES = 12  # frames sampled across a video to find its bars


def borders_to_crop(path: str | os.PathLike, crop_borders: bool | None = None, content_hash: str | None = None) -> Borders:
    """The bars to crop from `path`: `video_borders` when cropping is on (`crop_borders`, default the module's
    CROP_BORDERS read at call time), else none. The feature path and Grad-CAM both ask here."""
    on = CROP_BORDERS if crop_borders is None else crop_borders
    return video_borders(path, content_hash) if on else Borders()


def _borders_file(content_hash: str) -> Path:
    """Where a video's detected bars are kept between processes (with the detector's settings in the name: other
    settings detect anew). Under the cache's "hashes" folder: derived, cleared with it."""
    settings = hashlib.sha1(repr((DARK, FLAT, AGREE, MAX_SIDE, MIN_BAR, BORDER_SAMPLES)).encode()).hexdigest()[:8]
    return cache_dir() / "hashes" / "borders" / f"{content_hash}.{settings}.json"


def video_borders(path: str | os.PathLike, content_hash: str | None = None) -> Borders:
    """The constant bars of a video, in pixels of its frames (BORDER_SAMPLES frames sampled across it); memoised
    in the process and in the cache (a search's candidates are not sought again by every new process)."""
    src = resolve_video_path(path)
    key = content_hash or file_content_hash(src)
    with _BORDERS_LOCK:
        hit = _BORDERS.get(key)
    if hit is not None:
        return hit
    kept = _borders_file(key)
    try:
        stored = json.loads(kept.read_text())
        if not isinstance(stored, dict) or set(stored) != set(Borders().to_dict()):
            raise ValueError("not the four bars")
        found = Borders(**{side: int(v) for side, v in stored.items()})
    except (OSError, ValueError, TypeError):  # absent, damaged, or not what this code writes: detect
        info = probe(src)
        try:
            small = sample_frames_by_seek(src, BORDER_SAMPLES, size=min(720, info.width, info.height))  # exact to 720p
        except VideoError:  # e.g. a truncated file: nothing to crop; decoding it says what is wrong
            return Borders()
        found = detect_borders(small).scaled(small.shape[1:3], (info.height, info.width))
        try:
            write_bytes_whole(kept, json.dumps(found.to_dict()).encode())
        except OSError:  # a read-only or full cache: detected again next time
            pass
    with _BORDERS_LOCK:
        if len(_BORDERS) > 4096:
            _BORDERS.clear()
        _BORDERS[key] = found
    if not found.none:
        log.info("%s: constant borders %s px (top, bottom, left, right) cropped", src.name, found.key())
    return found


@dataclass
class VideoFeatures:
    """Frame features of one video at one sampling rate."""

    path: Path
    features: np.ndarray  # (T, D) float32, L2-normalised joint (text-frame) embeddings
    visual: np.ndarray  # (T, Dv) float32 raw visual features (self-similarity views)
    times: np.ndarray  # (T,) seconds, increasing
    duration: float  # real decoded duration in seconds
    encoder_id: str
    fps: float
    content_hash: str = ""  # BLAKE2b of the video file: with encoder_id and fps, what identifies these features
    from_cache: bool = False
    borders: Borders = field(default_factory=Borders)  # the bars cropped before the encoder (none: nothing)
    # (T, 3) per sample: mean luma, contrast, Laplacian variance of the frame (a clip's centre frame), from
    # which `analysis.content.content_free` tells frames without content; empty for features made elsewhere
    frame_stats: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))

    def __len__(self) -> int:
        return len(self.times)

    def content_free(self) -> tuple[np.ndarray, list[str]]:
        """(T,) bool and reasons: samples that carry no content (black, blank, fade, blur); none are known
        when the features carry no frame statistics."""
        if len(self.frame_stats) != len(self.times):
            return np.zeros(len(self.times), bool), [""] * len(self.times)
        return content_free(self.frame_stats)


_DONE = object()


def _decode_ahead(reader: VideoReader, out: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: pushes (t, frame) pairs, then _DONE or the exception that stopped it."""
    try:
        for item in reader:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_DONE)
    except BaseException as err:  # handed to the consumer, which re-raises it
        out.put(err)


@dataclass(frozen=True)
class EncoderSpec:
    """What decoding for an encoder needs to know, without its model: a decode-only worker (a Ray CPU task)
    prepares exactly the frames `encode_video` would."""

    id: str
    input_size: int
    clip_len: int = 1
    frame_rate: float = 0.0

    @classmethod
    def of(cls, enc: Encoder) -> EncoderSpec:
        return cls(enc.id, int(enc.input_size), int(enc.clip_len), float(enc.frame_rate))


@dataclass
class DecodedVideo:
    """A video decoded for one encoder at one rate (`decode_video`): what `encode_video(decoded=...)` encodes."""

    key: CacheKey
    borders: Borders
    step: int
    times: np.ndarray  # (F,) seconds of the decoded frames
    frames: np.ndarray  # (F, H, W, 3) uint8 at the encoder's input size
    duration: float


def _prepare(path: str | os.PathLike, spec: EncoderSpec, fps: float, crop_borders: bool | None,
             max_duration: float) -> tuple[Path, VideoReader, CacheKey, Borders, int]:
    """The reader and cache key of `path` for an encoder: its input size, the clip step, the cropped bars."""
    src = resolve_video_path(path)
    reader = VideoReader(src, fps=fps, max_duration=max_duration)  # probes: bad files fail before a model loads
    reader.size = spec.input_size
    step = clip_step(spec, fps)
    reader.fps = fps * step  # a video encoder's clips need frames at about its frame rate
    content = file_content_hash(src)
    borders = borders_to_crop(src, crop_borders, content)
    if not borders.none:
        reader.crop = (borders.top, borders.bottom, borders.left, borders.right)
    return src, reader, CacheKey(content, spec.id, float(fps), spec.input_size, borders.key()), borders, step


def decode_video(path: str | os.PathLike, spec: EncoderSpec, fps: float = 1.0, *, crop_borders: bool | None = None,
                 max_duration: float = DEFAULT_MAX_DURATION) -> DecodedVideo:
    """Decode `path` as `encode_video` would for the encoder `spec`, without loading a model (all frames held)."""
    _, reader, key, borders, step = _prepare(path, spec, fps, crop_borders, max_duration)
    times, frames = [], []
    for t, frame in reader:
        times.append(t)
        frames.append(frame)
    duration = float(reader.duration if reader.duration is not None else (times[-1] if times else 0.0))
    stack = np.stack(frames) if frames else np.zeros((0, spec.input_size, spec.input_size, 3), np.uint8)
    return DecodedVideo(key, borders, step, np.asarray(times, np.float64), stack, duration)


def clip_step(enc: Encoder | EncoderSpec, fps: float) -> int:
    """Decoded frames per output instant: 1 for image encoders; for a video encoder, the whole number k with
    fps * k closest to its frame rate, so that its clips are decoded at fps * k (outputs stay at `fps`)."""
    if enc.clip_len <= 1 or enc.frame_rate <= 0:
        return 1
    return max(1, round(enc.frame_rate / fps))


def _decoded(frames_q: queue.Queue) -> Iterator[tuple[float, np.ndarray]]:
    """The producer's (t, frame) pairs until _DONE; re-raises the exception that stopped it."""
    while True:
        item = frames_q.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _batches(items: Iterable[tuple[float, np.ndarray]], enc: Encoder, step: int) -> Iterator[tuple[list[float], list[np.ndarray]]]:
    """Batches of (times, inputs): frames for an image encoder; for a video encoder, clips of `clip_len`
    consecutive decoded frames centred on every `step`-th frame (edges repeat the first or last frame),
    built as the frames stream in (only one clip's span of frames is held)."""
    n = enc.clip_len
    if n <= 1:
        batch_t: list[float] = []
        batch: list[np.ndarray] = []
        for t, frame in items:
            batch_t.append(t)
            batch.append(frame)
            if len(batch) == enc.batch_size:
                yield batch_t, batch
                batch_t, batch = [], []
        if batch:
            yield batch_t, batch
        return
    before, after = n // 2, n - n // 2 - 1  # frames of a clip before and after its centre
    held: list[np.ndarray] = []  # decoded frames from index `base` on
    held_t: list[float] = []
    base, centre, count = 0, 0, 0
    out_t: list[float] = []
    out: list[np.ndarray] = []

    def clip_at(c: int, last: int) -> np.ndarray:
        idx = np.clip(np.arange(c - before, c + after + 1), 0, last) - base
        return np.stack([held[i] for i in idx])

    def drain(last: int, final: bool) -> Iterator[tuple[list[float], list[np.ndarray]]]:
        nonlocal centre, base, out_t, out
        while centre <= last and (final or centre + after <= last):
            out_t.append(held_t[centre - base])
            out.append(clip_at(centre, last))
            centre += step
            drop = max(0, min(centre - before, last) - base)  # frames no later clip needs
            del held[:drop], held_t[:drop]
            base += drop
            if len(out) == enc.batch_size:
                yield out_t, out
                out_t, out = [], []

    for t, frame in items:
        held.append(frame)
        held_t.append(t)
        count += 1
        yield from drain(count - 1, final=False)
    if count:
        yield from drain(count - 1, final=True)
    if out:
        yield out_t, out


def encode_video(
    path: str | os.PathLike,
    encoder: Encoder | str | None = None,
    fps: float = 1.0,
    *,
    cache: FeatureCache | bool = True,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_duration: float = DEFAULT_MAX_DURATION,
    show_progress: bool | None = None,
    crop_borders: bool | None = None,
    decoded: DecodedVideo | None = None,
) -> VideoFeatures:
    """Sample a video at `fps`, embed every sampled frame, and cache the result.

    `progress(fraction, text)` is called as batches finish; `should_stop()` returning True cancels
    (CancelledError, nothing cached). `show_progress` draws a tqdm bar (default: when stderr is a terminal).
    `crop_borders` (default CROP_BORDERS) crops the video's constant letterbox/pillarbox bars first.
    `decoded` (from `decode_video` for this encoder, e.g. in a Ray CPU task) is encoded instead of decoding.
    """
    reader: VideoReader | None = None
    if decoded is None:
        src = resolve_video_path(path)
        VideoReader(src, fps=fps, max_duration=max_duration)  # probes: bad files fail before a model loads
    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(encoder)
    if decoded is None:
        src, reader, key, borders, step = _prepare(path, EncoderSpec.of(enc), fps, crop_borders, max_duration)
    else:
        if decoded.key.encoder_id != enc.id or decoded.key.fps != float(fps):
            raise ValueError(f"frames decoded for {decoded.key.encoder_id} at {decoded.key.fps} fps, not {enc.id} at {fps}")
        src, key, borders, step = Path(path), decoded.key, decoded.borders, decoded.step
    store = FeatureCache() if cache is True else (cache or None)
    if store is not None:
        hit = store.get(key)
        if hit is not None and "frame_stats" not in hit:  # an entry of an earlier version: encoded again once
            hit = None
        if hit is not None:
            log.info("features of %s from the cache", src.name)
            if progress:
                progress(1.0, "loaded from cache")
            return VideoFeatures(
                Path(path), hit["features"], hit["visual"], hit["times"], float(hit["meta"]["duration"]),
                enc.id, float(fps), key.content_hash, from_cache=True, borders=borders, frame_stats=hit["frame_stats"],
            )

    if decoded is not None:
        expected = max(1, math.ceil(decoded.duration * fps)) if decoded.duration > 0 else None
    else:
        assert reader is not None
        expected = max(1, math.ceil(reader.info.duration * fps)) if reader.info.duration > 0 else None
    bar = None
    if show_progress if show_progress is not None else sys.stderr.isatty():

        bar = tqdm(total=expected, unit="frame", desc=f"encoding {src.name}", leave=False)

    stop = threading.Event()
    producer = None
    if decoded is not None:
        items: Iterable[tuple[float, np.ndarray]] = zip(decoded.times.tolist(), decoded.frames)
    else:
        frames_q: queue.Queue = queue.Queue(maxsize=2 * enc.batch_size * max(1, step))
        producer = threading.Thread(target=_decode_ahead, args=(reader, frames_q, stop), daemon=True)
        producer.start()
        items = _decoded(frames_q)
    joint, visual, times, stats = [], [], [], []
    try:
        for batch_t, batch in _batches(items, enc, step):
            if should_stop is not None and should_stop():
                raise CancelledError(f"encoding {src.name} was cancelled; nothing was cached.")
            if enc.clip_len > 1:
                j, v = enc.encode_clips(np.stack(batch))  # type: ignore[attr-defined]
            else:
                j, v = enc.encode_frames_both(np.stack(batch))
            joint.append(j)
            visual.append(v)
            times.extend(batch_t)
            stats.append(frame_stats(np.stack([b[len(b) // 2] if enc.clip_len > 1 else b for b in batch])))
            if bar is not None:
                bar.update(len(batch))
            if progress is not None:
                frac = min(1.0, len(times) / expected) if expected else 0.0
                unit = "clips" if enc.clip_len > 1 else "frames"
                progress(frac, f"encoded {len(times)} {unit}")
    finally:
        stop.set()
        if producer is not None:
            producer.join(timeout=5)
        if bar is not None:
            bar.close()
    if decoded is not None:
        duration = decoded.duration
    else:
        assert reader is not None
        duration = float(reader.duration if reader.duration is not None else times[-1])  # set once decoding ends

    feats = VideoFeatures(
        Path(path),
        np.concatenate(joint).astype(np.float32),
        np.concatenate(visual).astype(np.float32),
        np.asarray(times, dtype=np.float64),
        duration,
        enc.id,
        float(fps),
        key.content_hash,
        borders=borders,
        frame_stats=np.concatenate(stats).astype(np.float32),
    )
    if store is not None:
        store.put(
            key,
            {"features": feats.features, "visual": feats.visual, "times": feats.times, "frame_stats": feats.frame_stats},
            {"duration": feats.duration, "encoder": enc.id, "fps": fps, "video": src.name},
        )
    return feats
