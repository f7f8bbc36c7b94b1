"""Moment retrieval entry points: a text query in, ranked [start, end, score] moments and the 2D map out.

Pipeline: cached frame features -> `VideoIndex` (clip grid, candidate windows, video structure; built once
per video) -> per query: clip similarity, one score per candidate (zero-shot scorer or trained head),
greedy NMS, clamping to the video. Short videos use one 2D-TAN map of N clips; long videos (more frames
than the largest map) use multi-scale windowed sparse maps over a one-frame clip grid, so memory grows
with the number of clips only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from backends.analysis import temporal_map as tm
from backends.analysis.content import spans as content_spans
from backends.analysis.windows import clamp_windows, nms, temporal_iou
from backends.core.contracts import ProgressFn, StopFn, check_query
from backends.core.errors import (
    CheckpointError,
    QueryError,
    VideoNotFoundError,
    WindowError,
)
from backends.core.paths import is_inside
from backends.encoders import Encoder, cached_encoder
from backends.features import VideoFeatures, encode_video
from backends.io.video import VIDEO_EXTENSIONS
from backends.models import grounding
from backends.models.grounding import GroundingHead
from backends.retrieval import confidence as conf
from backends.retrieval import zero_shot as zs

LONG_WINDOW_CLIPS = 128  # clips per window of the long-video maps (2D-TAN TACoS size), hop half of it



class OutsideVideoError(WindowError):
    """A window (e.g. a ground truth given with --gt) does not lie inside the video."""


class HeadCheckpointError(CheckpointError):
    """The trained head cannot be used with this encoder."""


# --- results ---------------------------------------------------------------------------------------
@dataclass
class Moment:
    start: float  # seconds
    end: float  # seconds
    score: float  # higher is better; comparable within one query only
    confidence: float | None = None  # 0-1 against unrelated queries on the same video (`retrieval.confidence`)

    def to_dict(self) -> dict:
        out = {"start": round(self.start, 3), "end": round(self.end, 3), "score": round(float(self.score), 6)}
        if self.confidence is not None:
            out["confidence"] = round(float(self.confidence), 3)
        return out


@dataclass
class RetrievalResult:
    """One query's ranked moments, its saliency curve and the 2D map that explains the ranking."""

    video: str
    duration: float
    encoder: str
    query: str
    moments: list[Moment]  # after NMS, sorted by descending score
    saliency_times: np.ndarray  # (T,) seconds of the sampled frames
    saliency: np.ndarray  # (T,) cosine similarity of each frame with the query
    map: tm.TemporalMap  # the scored map (long videos: a coarse map of the whole video)
    scorer: str = zs.DEFAULT_SCORER  # zero-shot scorer name, or "head:<checkpoint>"
    extra: dict = field(default_factory=dict)
    # (T,) samples of the saliency curve that carry no content (black, blank, fade, blur) and why
    blank: np.ndarray | None = None
    blank_reasons: list[str] = field(default_factory=list)
    # the top moment stands out from the rest of the video (`confidence.is_distinct`: its confidence >= DISTINCT_LEVEL
    # and its window looks unlike the rest); False: "no distinct moment"; None: not judged (a query by clip on a
    # video too short for its null)
    distinct: bool | None = None
    # how far the top moment looks from the rest of the video (`confidence.visual_separation`); below
    # DISTINCT_SEPARATION the video is one scene as far as this moment goes
    separation: float | None = None

    def content_free(self) -> list[dict]:
        """Runs of samples without content as `{"start", "end", "reason"}` (seconds)."""
        if self.blank is None:
            return []
        return content_spans(self.saliency_times, self.blank, self.blank_reasons, self.duration)

    def ious(self, gt: Sequence[float] | None) -> np.ndarray | None:
        """IoU of every moment with a ground-truth window (None without one)."""
        if gt is None or not self.moments:
            return None
        wins = np.array([[m.start, m.end] for m in self.moments], dtype=float)
        return np.atleast_1d(temporal_iou(wins, np.asarray(gt, dtype=float)))

    def table(self, gt: Sequence[float] | None = None) -> list[dict]:
        """One row per moment (rank, start, end, length, score, IoU with `gt` or None): what the UIs list."""
        ious = self.ious(gt)
        return [{"rank": i + 1, "start": round(m.start, 2), "end": round(m.end, 2),
                 "length": round(m.end - m.start, 2), "score": round(float(m.score), 4),
                 "confidence": None if m.confidence is None else round(float(m.confidence), 2),
                 "iou": None if ious is None else round(float(ious[i]), 3)} for i, m in enumerate(self.moments)]

    def verdict(self) -> str:
        """One sentence on how sure the answer is (what the UIs and the CLI print above the moments)."""
        if self.distinct is None:
            return ""
        if not self.moments:
            return "No distinct moment: no part of the video carries content to match."
        top = self.moments[0].confidence
        against = "other clips of this video" if "query_clip" in self.extra else "unrelated queries on this video"
        if self.distinct:
            return f"The top moment stands out (confidence {top:.2f} against {against})."
        what = "query clip" if "query_clip" in self.extra else "query"
        if top is not None and conf.not_distinct_because(top, self.separation) == "look":
            return (f"No distinct moment: the top moment (confidence {top:.2f} against {against}) looks like the "
                    "rest of this video, which may show the same thing throughout or not at all; the times below "
                    "mark no particular event.")
        return (f"No distinct moment: the {what} fits no part of this video clearly better than the rest (top "
                f"confidence {top:.2f}); the moments below are guesses.")

    def to_dict(self) -> dict:
        """`{"video", "duration", "encoder", "query", "moments": [{"start", "end", "score"}]}`."""
        return {"video": self.video, "duration": round(float(self.duration), 3), "encoder": self.encoder,
                "query": self.query, "moments": [m.to_dict() for m in self.moments], "content_free": self.content_free(),
                **({} if self.distinct is None else {"distinct": bool(self.distinct)})}


# --- input checks ----------------------------------------------------------------------------------
def check_window(window: Sequence[float], duration: float, what: str = "the window") -> tuple[float, float]:
    """Return (start, end) or raise OutsideVideoError when it is empty or not inside [0, duration]."""
    try:
        start, end = float(window[0]), float(window[1])
    except (TypeError, ValueError, IndexError):
        raise OutsideVideoError(f"{what} must be two numbers START END in seconds.") from None
    tol = 1e-3
    if not (np.isfinite(start) and np.isfinite(end)):
        raise OutsideVideoError(f"{what} [{start:g}, {end:g}] is not two finite numbers; give START END in seconds.")
    if end <= start:
        raise OutsideVideoError(f"{what} [{start:g}, {end:g}] is empty: its end must be later than its start.")
    if start < -tol or end > duration + tol:
        where = "lies outside" if start >= duration or end <= 0 else "reaches past the ends of"
        raise OutsideVideoError(
            f"{what} [{start:g}, {end:g}] {where} the video, which lasts {duration:.2f} s: keep it within 0-{duration:.2f}.")
    return max(start, 0.0), min(end, duration)


# --- the per-video index ---------------------------------------------------------------------------
@dataclass
class VideoIndex:
    """Everything query-independent about one video: clip grid, candidates, structure (built once)."""

    duration: float
    frame_times: np.ndarray  # (T,)
    frame_features: np.ndarray  # (T, D) L2-normalised joint embeddings
    clip_times: np.ndarray  # (M, 2) the scoring grid
    clip_features: np.ndarray  # (M, D) L2-normalised
    context: zs.ClipContext  # boundaries, event proposals (visual self-similarity)
    starts: np.ndarray  # (C,) candidate windows as inclusive clip indices
    ends: np.ndarray
    windows: np.ndarray  # (C, 2) candidate windows in seconds
    map_num_clips: int  # N of the displayed map
    map_mask: np.ndarray  # (N, N)
    map_edges: np.ndarray  # (N + 1,) clip-grid edge index of each map clip boundary
    long_video: bool
    mask_kind: str
    # (M,) clips that carry no content (most of their frames black, blank, faded or blurred): such clips neither
    # win a query nor start or end a window (`score_candidates`)
    clip_blank: np.ndarray | None = None
    _map_cells: tuple | None = field(default=None, repr=False)

    def map_cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The displayed map's valid cells (a, b), which of them span at least one grid clip (`ok`), and their
        inclusive clip-grid windows (starts, ends) for those; computed once, so per-video memos hit."""
        if self._map_cells is None:
            a, b = np.nonzero(self.map_mask)
            s = self.map_edges[a]
            e = self.map_edges[b + 1] - 1
            ok = e >= s
            self._map_cells = (a, b, ok, s[ok], e[ok])
        return self._map_cells

    @property
    def map_clip_times(self) -> np.ndarray:
        e = self.map_edges
        t = np.concatenate([self.clip_times[:, 0], [self.clip_times[-1, 1]]])
        return np.stack([t[e[:-1]], t[e[1:]]], axis=1)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def build_index(features: np.ndarray, times: np.ndarray, duration: float, visual: np.ndarray | None = None,
                fps: float = 1.0, *, num_clips: int | None = None, mask: str = "auto",
                content_free: np.ndarray | None = None) -> VideoIndex:
    """Prepare a video for queries. `num_clips` fixes one N x N map; by default N follows the duration and
    videos with more frames than 128 get multi-scale windowed sparse maps. `content_free` (T,) marks frames
    without content (`analysis.content`): a clip is blank when most of its frames are, and a clip's query
    features average its frames with content only."""
    if mask not in tm.MASK_KINDS:
        raise ValueError(f"unknown mask {mask!r}; use one of {', '.join(tm.MASK_KINDS)}")
    features = _unit(features)
    times = np.asarray(times, dtype=np.float64)
    duration = float(max(duration, times[-1] if len(times) else 0.0, 1e-3))
    long_video = num_clips is None and len(times) > max(tm.NUM_CLIP_CHOICES)
    blank = None if content_free is None or len(content_free) != len(times) else np.asarray(content_free, bool)
    if blank is not None and (not blank.any() or blank.all()):
        blank = None  # nothing to leave out (or nothing left): every clip as it is
    clip_blank = None
    if not long_video:
        n = int(num_clips or tm.default_num_clips(duration, fps))
        if n < 1:
            raise ValueError("num_clips must be positive")
        clip_times = tm.clip_grid(duration, n)
        if blank is None:
            clip_feats = _unit(tm.resample_to_clips(features, times, clip_times))
        else:
            keep = ~blank
            clip_feats = _unit(tm.resample_to_clips(features[keep], times[keep], clip_times))
            clip_blank = tm.resample_to_clips(blank.astype(np.float64)[:, None], times, clip_times)[:, 0] > 0.5
        clip_vis = tm.resample_to_clips(visual, times, clip_times) if visual is not None else None
        map_mask = tm.moment_mask(n, mask)
        starts, ends = np.nonzero(map_mask)
        map_edges = np.arange(n + 1)
        map_n = n
    else:
        # one clip per sampled frame; candidates from windowed maps at scales 1, 2, 4, ... clips per cell unit
        m = len(times)
        clip_times = tm.clip_grid(duration, m)
        clip_feats = features
        clip_vis = None if visual is None else np.asarray(visual, dtype=np.float32)
        clip_blank = blank
        starts, ends = _multiscale_candidates(m, mask)
        map_n = max(tm.NUM_CLIP_CHOICES)
        map_mask = tm.moment_mask(map_n, "sparse" if mask == "auto" else mask)
        map_edges = np.linspace(0, m, map_n + 1).round().astype(int)
    order = np.lexsort((ends, starts))
    starts, ends = starts[order].astype(np.int64), ends[order].astype(np.int64)
    windows = np.stack([clip_times[starts, 0], clip_times[ends, 1]], axis=1)
    clip_blank = clip_blank if clip_blank is not None and clip_blank.any() else None
    return VideoIndex(duration, times, features, clip_times, clip_feats, zs.ClipContext(clip_vis, len(clip_times), clip_blank),
                      starts, ends, windows, map_n, map_mask, map_edges, long_video, mask, clip_blank)


def _multiscale_candidates(num_clips: int, mask: str) -> tuple[np.ndarray, np.ndarray]:
    """Cells of sparse (or dense) maps of 128 units sliding by 64 units, at unit = 1, 2, 4, ... clips,
    until one map covers the video (MS-2D-TAN style). Returns unique inclusive clip windows."""
    w = LONG_WINDOW_CLIPS
    base = tm.moment_mask(w, "sparse" if mask == "auto" else mask)
    a0, b0 = np.nonzero(base)
    keys = []
    unit = 1
    while True:
        units = -(-num_clips // unit)  # clips in this scale, rounded up
        offsets = np.arange(0, max(units - w, 0) + 1, w // 2)
        if offsets[-1] + w < units:
            offsets = np.append(offsets, units - w)
        a = (offsets[:, None] + a0[None, :]).ravel()
        b = (offsets[:, None] + b0[None, :]).ravel()
        keep = b < units
        s = a[keep] * unit
        e = np.minimum((b[keep] + 1) * unit, num_clips) - 1
        keys.append(s.astype(np.int64) * num_clips + e)
        if units <= w:
            break
        unit *= 2
    key = np.unique(np.concatenate(keys))
    return key // num_clips, key % num_clips


# --- scoring one query -----------------------------------------------------------------------------
def score_candidates(index: VideoIndex, query_vec: np.ndarray, scorer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip similarity (M,) and one zero-shot score per candidate window (C,)."""
    sim = index.clip_features @ _unit(np.asarray(query_vec).reshape(-1))
    signals = zs.ClipSignals(sim, index.context)
    scores = zs.get_scorer(scorer)(signals, index.starts, index.ends)
    if index.clip_blank is not None:
        scores = np.where(content_window_ok(index, index.starts, index.ends), scores, -np.inf)
    return sim, scores


def content_window_ok(index: VideoIndex, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(C,) bool: windows (inclusive clip indices) that neither start nor end on a blank clip and are mostly
    content (more than half of their clips); all True when the video has no blank clip."""
    if index.clip_blank is None:
        return np.ones(len(starts), bool)
    b = index.clip_blank
    cum = np.concatenate([[0], np.cumsum(b)])
    share = (cum[ends + 1] - cum[starts]) / (ends - starts + 1)
    return ~b[starts] & ~b[ends] & (share <= 0.5)


def video_null(index: VideoIndex, enc: Encoder, scorer: str | None = None) -> tuple[conf.Null, np.ndarray, np.ndarray]:
    """The null of this video (`retrieval.confidence`): the lift of every unrelated query's best window under
    `scorer`, and the per-clip mean and standard deviation of the unrelated queries' cosines (the query-bank
    normalisation); computed once per video index, encoder and scorer."""
    name = scorer or zs.DEFAULT_SCORER

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bank = conf.null_bank(enc)
        content = _content_clips(index)
        sims = index.clip_features @ bank.T  # (M, B)
        lifts = []
        for j, vec in enumerate(bank):
            _, scores = score_candidates(index, vec, name)
            if not np.isfinite(scores).any():
                continue
            best = int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))
            z = conf.leave_one_out_z(sims, j)  # the null query normalised by the bank without itself
            lifts.append(conf.lift(z, content, int(index.starts[best]), int(index.ends[best])))
        return np.sort(np.asarray(lifts, np.float64)), sims.mean(axis=1), sims.std(axis=1) + 1e-6

    lifts, mu, sd = index.context.memo(f"null:{enc.id}:{name}", (index.starts,), compute)  # type: ignore[arg-type]
    return conf.Null(lifts), mu, sd


def _content_clips(index: VideoIndex) -> np.ndarray:
    return np.ones(len(index.clip_times), bool) if index.clip_blank is None else ~index.clip_blank


def judge(index: VideoIndex, enc: Encoder, sim: np.ndarray, moments: list[Moment],
          scorer: str | None = None, separation: float | None = None) -> tuple[list[Moment], bool]:
    """The moments with their confidence, and whether the top one is distinct (`confidence.is_distinct`;
    `separation` is the top moment's `top_separation`, computed here when not given)."""
    if not moments:
        return moments, False
    null, mu, sd = video_null(index, enc, scorer)
    z = (sim - mu) / sd  # the query's cosines normalised by the unrelated queries' at each clip
    values = conf.moment_confidences(null, z, _content_clips(index), index.clip_times,
                                     [(m.start, m.end) for m in moments])
    judged = [replace(m, confidence=c) for m, c in zip(moments, values)]
    if separation is None:
        separation = top_separation(index, moments[0])
    return judged, conf.is_distinct(values[0], separation)


CLIP_NULL_DRAWS = 48  # clips of the searched video used as null queries for a query by clip


def clip_null(index: VideoIndex, length: float, scorer: str | None = None) -> tuple[conf.Null, conf.Null, np.ndarray, np.ndarray]:
    """The null of a query by clip (`retrieval.confidence`, the clip form): CLIP_NULL_DRAWS clips of the searched
    video itself, each `length` seconds long (whole clips of the scoring grid, at most a quarter of the video) and
    spread evenly over it, are asked as queries in turn; each one's best window among those that do not overlap it
    (as for a query moment) gives one lift and one match (`confidence.window_match`). Per-clip mean and standard
    deviation of the draws' cosines normalise the query as the text null does. Returns (lift null, match null,
    mean, std); memoised per video index, length and scorer."""
    name = scorer or zs.DEFAULT_SCORER
    step = index.duration / max(len(index.clip_times), 1)  # one clip of the scoring grid
    # whole clips (so that the memo holds one null per length the grid can tell apart), at most a quarter of the video
    length = float(min(max(round(length / step), 1) * step, index.duration / 4))

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        content = _content_clips(index)
        draws = []
        for s in np.linspace(0.0, max(index.duration - length, 0.0), CLIP_NULL_DRAWS):
            a, b = conf.window_clips(index.clip_times, s, s + length)
            if not content[a : b + 1].any():
                continue  # a black or faded stretch is not a clip anyone would ask about
            draws.append((s, clip_query_vector(index.frame_features, index.frame_times, (s, s + length))))
        m = len(index.clip_times)
        if len(draws) < 2:
            return np.zeros(0), np.zeros(0), np.zeros(m), np.ones(m)
        sims = index.clip_features @ np.stack([v for _, v in draws]).T  # (M, B)
        lifts, matches = [], []
        for j, (s, vec) in enumerate(draws):
            _, scores = score_candidates(index, vec, name)
            overlap = np.minimum(index.windows[:, 1], s + length) - np.maximum(index.windows[:, 0], s)
            scores = np.where((overlap > 1e-6) | ~np.isfinite(scores), -np.inf, scores)
            if not np.isfinite(scores).any():
                continue
            best = int(np.argmax(scores))
            a, b = int(index.starts[best]), int(index.ends[best])
            lifts.append(conf.lift(conf.leave_one_out_z(sims, j), content, a, b))
            matches.append(conf.window_match(index.clip_features, vec, content, a, b))
        return (np.sort(np.asarray(lifts, np.float64)), np.sort(np.asarray(matches, np.float64)),
                sims.mean(axis=1), sims.std(axis=1) + 1e-6)

    lifts, matches, mu, sd = index.context.memo(f"clip-null:{length:.3f}:{name}", (index.starts,), compute)  # type: ignore[arg-type]
    return conf.Null(lifts), conf.Null(matches), mu, sd


def judge_clip(index: VideoIndex, qvec: np.ndarray, sim: np.ndarray, moments: list[Moment], length: float,
               scorer: str | None = None, separation: float | None = None) -> tuple[list[Moment], bool | None]:
    """`judge` for a query by clip, against `clip_null`: a moment's confidence is the geometric mean of its lift's and
    its match's share of the null (`retrieval.confidence`, the clip form); (moments, None) when the video is too short
    for a null."""
    if not moments:
        return moments, False
    lift_null, match_null, mu, sd = clip_null(index, length, scorer)
    if len(lift_null.lifts) == 0:
        return moments, None
    content = _content_clips(index)
    spans = [(m.start, m.end) for m in moments]
    lifts = conf.moment_confidences(lift_null, (sim - mu) / sd, content, index.clip_times, spans)
    values = []
    for m, by_lift in zip(moments, lifts):
        a, b = conf.window_clips(index.clip_times, m.start, m.end)
        by_match = match_null.confidence(conf.window_match(index.clip_features, qvec, content, a, b))
        values.append(round(float(np.sqrt(by_lift * by_match)), 3))
    judged = [replace(m, confidence=c) for m, c in zip(moments, values)]
    if separation is None:
        separation = top_separation(index, moments[0])
    return judged, conf.is_distinct(values[0], separation)


def top_separation(index: VideoIndex, moment: Moment) -> float:
    """`confidence.visual_separation` of one moment, on the video's distinct samples (a short video's map repeats
    each sample over several clips)."""
    visual = index.context.visual if index.context.visual is not None else index.clip_features
    a, b = conf.window_clips(index.clip_times, moment.start, moment.end)
    frames, a, b = conf.collapse_repeats(np.asarray(visual, np.float32), a, b)
    return conf.visual_separation(frames, a, b)


def top_moments(index: VideoIndex, scores: np.ndarray, top_k: int = 5, nms_threshold: float = 0.5) -> list[Moment]:
    """Greedy NMS over the candidate windows, clamped to the video, best first."""
    finite = np.isfinite(scores)
    cand = np.nonzero(finite)[0]
    if len(cand) == 0:
        return []
    # NMS only needs the best few hundred windows (the pairwise IoU matrix stays small on long videos); when they
    # all lie around fewer than top_k places, the next best are taken in too (the 100 best windows of a query on
    # realmix_dev covered 4 places, so "top 5" returned 4)
    pre = min(len(cand), max(20 * top_k, 100))
    best = cand[np.argpartition(-scores[cand], pre - 1)[:pre]] if pre < len(cand) else cand
    keep = nms(index.windows[best], scores[best], nms_threshold, top_k=top_k)
    if len(keep) < top_k and pre < len(cand):  # rare: sort them all and widen until top_k places or no more
        order = cand[np.argsort(-scores[cand], kind="stable")]
        while len(keep) < top_k and pre < len(order):
            pre = min(len(order), 4 * pre)
            best = order[:pre]
            keep = nms(index.windows[best], scores[best], nms_threshold, top_k=top_k)
    cand = best
    wins = clamp_windows(index.windows[cand[keep]], index.duration)
    return [Moment(float(s), float(e), float(scores[cand[k]])) for (s, e), k in zip(wins, keep)]


def map_scores(index: VideoIndex, query_vec: np.ndarray, scorer: str | None = None,
               sim: np.ndarray | None = None, candidate_scores: np.ndarray | None = None) -> tm.TemporalMap:
    """The N x N map of the query (NaN for invalid cells) scored by the same scorer as the moments
    (short videos: the candidates are the map's cells, so their scores are reused when given)."""
    n = index.map_num_clips
    if candidate_scores is not None and not index.long_video:
        grid = np.full((n, n), np.nan)
        grid[index.starts, index.ends] = np.where(np.isfinite(candidate_scores), candidate_scores, np.nan)
        return tm.TemporalMap(n, index.map_clip_times, grid, index.map_mask.copy())
    if sim is None:
        sim = index.clip_features @ _unit(np.asarray(query_vec).reshape(-1))
    a, b, ok, s, e = index.map_cells()
    values = np.full(len(a), np.nan)
    signals = zs.ClipSignals(sim, index.context)
    values[ok] = np.where(content_window_ok(index, s, e), zs.get_scorer(scorer)(signals, s, e), np.nan)
    grid = np.full((n, n), np.nan)
    grid[a, b] = values
    return tm.TemporalMap(n, index.map_clip_times, grid, index.map_mask.copy())


# --- trained head (another module; optional) ---------------------------------------------------------
def load_head(checkpoint: str | os.PathLike, encoder_dim: int) -> GroundingHead:
    """Load a trained 2D-TAN grounding head (`backends.retrieval.grounding`) and check its dimension."""

    head = grounding.load_head(checkpoint)
    if int(head.feature_dim) != int(encoder_dim):
        raise HeadCheckpointError(
            f"the head {Path(checkpoint).name} was trained on {head.feature_dim}-d features but this encoder gives "
            f"{encoder_dim}-d ones; pick the encoder it was trained with.")
    return head


def _head_scores(head: GroundingHead, index: VideoIndex, query_vec: np.ndarray) -> tuple[np.ndarray, tm.TemporalMap]:
    """Scores of the map cells from the trained head; its own map replaces the candidates."""
    n = index.map_num_clips
    mt = index.map_clip_times
    feats = _unit(tm.resample_to_clips(index.frame_features, index.frame_times, mt))
    grid = np.asarray(head.score_map(feats, _unit(query_vec), index.map_mask), dtype=np.float64)
    grid = np.where(index.map_mask, grid, np.nan)
    return grid, tm.TemporalMap(n, mt, grid, index.map_mask.copy())


# --- public entry points ---------------------------------------------------------------------------
# Per-video indexes, shared by every caller of the process (the web app's workers included): keyed like the
# feature cache (file content hash, encoder id, fps) plus the map settings, bounded, and guarded by a lock.
_INDEX_CACHE: OrderedDict[tuple, VideoIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 4
_INDEX_CACHE_LOCK = threading.Lock()


def _video_features(video: str | os.PathLike, encoder: Encoder | str | None, fps: float, progress: ProgressFn | None,
                    should_stop: StopFn | None = None) -> tuple[Encoder, VideoFeatures]:

    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(encoder)
    return enc, encode_video(video, enc, fps=fps, progress=progress, should_stop=should_stop)


def _index_for(feats: VideoFeatures, fps: float, num_clips: int | None, mask: str) -> VideoIndex:
    """The video's index, built once per (content, encoder, fps, map settings, cropped bars) and shared by its
    queries."""
    key = (feats.content_hash, feats.encoder_id, float(fps), num_clips, mask, feats.borders.key())
    cacheable = bool(feats.content_hash)  # features made outside `encode_video` carry no content hash
    if cacheable:
        with _INDEX_CACHE_LOCK:
            hit = _INDEX_CACHE.get(key)
            if hit is not None:
                _INDEX_CACHE.move_to_end(key)
                return hit
    # built outside the lock: a second worker asking for the same video meanwhile builds an equal index
    index = build_index(feats.features, feats.times, feats.duration, feats.visual, fps, num_clips=num_clips, mask=mask,
                        content_free=feats.content_free()[0])
    if cacheable:
        with _INDEX_CACHE_LOCK:
            index = _INDEX_CACHE.setdefault(key, index)
            _INDEX_CACHE.move_to_end(key)
            while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                _INDEX_CACHE.popitem(last=False)
    return index


def _check_ranking(top_k: int, nms_threshold: float) -> None:
    """The ranking options of every retrieval, refused in one sentence before any encoding."""
    if top_k < 1:
        raise QueryError(f"top-k must be at least 1, got {top_k}.")
    if not 0 <= nms_threshold <= 1:  # also NaN, which would switch NMS off without a word
        raise QueryError(f"the NMS IoU threshold must be a number from 0 to 1, got {nms_threshold:g}.")


def retrieve_many(video: str | os.PathLike, queries: Sequence[str], *, encoder: Encoder | str | None = None,
                  head: str | os.PathLike | None = None, top_k: int = 5, nms_threshold: float = 0.5, fps: float = 1.0,
                  num_clips: int | None = None, mask: str = "auto", progress: ProgressFn | None = None,
                  scorer: str | None = None, should_stop: StopFn | None = None,
                  confidence: bool = True) -> list[RetrievalResult]:
    """Retrieve moments for several queries, encoding the video once (`should_stop()` -> True cancels).
    `confidence=False` skips the confidences and `distinct` (the null of 48 queries, computed once per video)."""
    texts = [check_query(q) for q in queries]
    _check_ranking(top_k, nms_threshold)
    enc, feats = _video_features(video, encoder, fps, progress, should_stop)
    head_model = load_head(head, feats.features.shape[1]) if head else None
    if head_model is not None:  # the head scores the map size and mask it was trained on
        num_clips, mask = head_model.num_clips, head_model.config.mask
    index = _index_for(feats, fps, num_clips, mask)
    qvecs = np.asarray(enc.encode_text(texts), dtype=np.float32).reshape(len(texts), -1)
    frame_sim = feats.features @ _unit(qvecs).T  # (T, Q) saliency curves
    blank, reasons = feats.content_free()
    nothing = bool(blank.size) and bool(blank.all())  # every frame black, blank or a fade: nothing can be a moment
    results = []
    used = f"head:{Path(str(head)).name}" if head_model is not None else scorer or zs.DEFAULT_SCORER
    for i, text in enumerate(texts):
        moments: list[Moment]
        if nothing:  # no window may be a moment, so none is scored (the map is still drawn)
            moments, tmap = [], map_scores(index, qvecs[i], scorer)
            sim = index.clip_features @ _unit(qvecs[i])
        elif head_model is None:
            sim, scores = score_candidates(index, qvecs[i], scorer)
            moments = top_moments(index, scores, top_k, nms_threshold)
            tmap = map_scores(index, qvecs[i], scorer, sim, scores)
        else:
            grid, tmap = _head_scores(head_model, index, qvecs[i])
            a, b = np.nonzero(index.map_mask)
            sub = _sub_index(index, a, b)
            cells = grid[a, b]
            if blank.any():  # the head's windows follow the same content rule as the zero-shot candidates
                cells = np.where(_map_windows_with_content(index, blank, a, b), cells, -np.inf)
            moments = top_moments(sub, cells, top_k, nms_threshold)
            sim = index.clip_features @ _unit(qvecs[i])
        distinct: bool | None = False if nothing else None  # judged below (judge says False for no moment)
        separation = top_separation(index, moments[0]) if moments else None
        if confidence:
            moments, distinct = judge(index, enc, sim, moments, scorer, separation)
        results.append(RetrievalResult(str(video), float(feats.duration), feats.encoder_id, text, moments,
                                       feats.times.copy(), frame_sim[:, i].astype(np.float64), tmap, used,
                                       blank=blank if blank.any() else None, blank_reasons=reasons,
                                       distinct=distinct, separation=separation))
    return results


def _map_windows_with_content(index: VideoIndex, blank: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C,) bool for the displayed map's windows a..b (map clips): `content_window_ok` on the map's clips, a map
    clip being blank when most of its frames are."""
    mt = index.map_clip_times
    map_blank = tm.resample_to_clips(blank.astype(np.float64)[:, None], index.frame_times, mt)[:, 0] > 0.5
    cum = np.concatenate([[0], np.cumsum(map_blank)])
    share = (cum[b + 1] - cum[a]) / (b - a + 1)
    return ~map_blank[a] & ~map_blank[b] & (share <= 0.5)


def _sub_index(index: VideoIndex, a: np.ndarray, b: np.ndarray) -> VideoIndex:
    mt = index.map_clip_times
    windows = np.stack([mt[a, 0], mt[b, 1]], axis=1)
    return VideoIndex(index.duration, index.frame_times, index.frame_features, mt, index.clip_features,
                      index.context, a, b, windows, index.map_num_clips, index.map_mask, index.map_edges,
                      index.long_video, index.mask_kind)


def retrieve(video: str | os.PathLike, query: str, *, encoder: Encoder | str | None = None,
             head: str | os.PathLike | None = None, top_k: int = 5, nms_threshold: float = 0.5, fps: float = 1.0,
             num_clips: int | None = None, mask: str = "auto", progress: ProgressFn | None = None,
             scorer: str | None = None, should_stop: StopFn | None = None, confidence: bool = True) -> RetrievalResult:
    """Top-k moments of one text query in a video, with its saliency curve and 2D temporal map."""
    return retrieve_many(video, [query], encoder=encoder, head=head, top_k=top_k, nms_threshold=nms_threshold,
                         fps=fps, num_clips=num_clips, mask=mask, progress=progress, scorer=scorer,
                         should_stop=should_stop, confidence=confidence)[0]


def resolve_annotation_video(vid: str, video_dir: str | os.PathLike | None, *, confine: bool = False) -> Path:
    """The video file of an annotation's `vid`: as given (simple json names the file), else with a common
    extension, in `video_dir`. `confine=True` (the web app) accepts only files inside `video_dir`, so an
    annotation cannot point at `../../etc/passwd` or an absolute path, and says the same whether a file
    outside exists or not."""
    base = Path(video_dir) if video_dir is not None else Path(".")
    vid = str(vid)
    direct = Path(vid) if Path(vid).is_absolute() else base / vid
    candidates = [direct] + [base / f"{vid}{ext}" for ext in VIDEO_EXTENSIONS] + \
                 [base / f"{vid}{ext.upper()}" for ext in VIDEO_EXTENSIONS]
    for cand in candidates:
        if confine and not is_inside(cand, base):
            continue
        if cand.is_file():
            return cand
    where = "the server's data folder" if confine else str(base)
    raise VideoNotFoundError(f"no video file for {vid[:80]!r} in {where}; name the videos VID.mp4 (or .avi, .webm, "
                             ".mkv, .mov)" + ("." if confine else " and pass --video-dir with them."))



def predict_for_annotations(queries: Sequence[Any], video_dir: str | os.PathLike | None = None, *,
                            encoder: Encoder | str | None = None, head: str | os.PathLike | None = None,
                            top_k: int = 10, progress: ProgressFn | None = None, scorer: str | None = None,
                            nms_threshold: float = 0.5, fps: float = 1.0, confine: bool = False) -> list[dict]:
    """Predictions aligned with `queries` (AnnotatedQuery): `{"qid", "pred_relevant_windows": [[s, e, score]]}`.
    Queries are grouped by video so that each video is encoded once."""
    by_video: OrderedDict[str, list[int]] = OrderedDict()
    for i, q in enumerate(queries):
        by_video.setdefault(str(q.vid), []).append(i)
    out: list[dict | None] = [None] * len(queries)
    for done, (vid, idx) in enumerate(by_video.items()):
        path = resolve_annotation_video(vid, video_dir, confine=confine)
        if progress is not None:
            progress(done / len(by_video), f"video {done + 1}/{len(by_video)}: {path.name}")
        results = retrieve_many(path, [queries[i].query for i in idx], encoder=encoder, head=head, top_k=top_k,
                                nms_threshold=nms_threshold, fps=fps, scorer=scorer)
        for i, r in zip(idx, results):
            out[i] = {"qid": queries[i].qid, "vid": vid, "query": queries[i].query,
                      "pred_relevant_windows": [[m.start, m.end, m.score] for m in r.moments]}
    if progress is not None:
        progress(1.0, "done")
    return out  # type: ignore[return-value]


def clip_query_vector(features: np.ndarray, times: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """A clip as a query: the mean joint embedding of the samples inside `window` (the nearest sample when
    the window holds none), L2-normalised."""
    s, e = float(window[0]), float(window[1])
    inside = (times >= s) & (times <= e)
    if not inside.any():
        inside = np.zeros(len(times), bool)
        inside[int(np.argmin(np.abs(times - (s + e) / 2)))] = True
    return _unit(features[inside].mean(axis=0))


def retrieve_by_clip(video: str | os.PathLike, *, moment: Sequence[float] | None = None,
                     query_video: str | os.PathLike | None = None, query_window: Sequence[float] | None = None,
                     encoder: Encoder | str | None = None, top_k: int = 5, nms_threshold: float = 0.5,
                     fps: float = 1.0, num_clips: int | None = None, mask: str = "auto",
                     progress: ProgressFn | None = None, scorer: str | None = None,
                     should_stop: StopFn | None = None) -> RetrievalResult:
    """Query by clip (video re-localisation): the moments of `video` most like a clip, given as a `moment`
    [start, end] of the same video or as another video (`query_video`, optionally its `query_window`).
    Works with every encoder, including video encoders without a text side. A moment of the same video is
    not an answer to itself: windows that overlap it are left out."""
    if (moment is None) == (query_video is None):
        raise QueryError("give the query clip either as a moment of the video (start, end) or as another video.")
    _check_ranking(top_k, nms_threshold)
    enc, feats = _video_features(video, encoder, fps, progress, should_stop)
    # Clips are compared in the encoder's visual feature space (no text involved: the raw pooled features
    # tell scenes apart better than a text-joint space), centred on the searched video's mean feature so
    # that what every sample shares (post-ReLU features are all positive) does not dominate the cosine.
    centre = feats.visual.mean(axis=0)
    space = replace(feats, features=_unit(feats.visual - centre),
                    content_hash=f"{feats.content_hash}|clip-space" if feats.content_hash else "")
    exclude = None
    if moment is not None:
        window = check_window(moment, feats.duration, "the query moment")
        qvec = clip_query_vector(space.features, feats.times, window)
        label = f"clip {window[0]:.1f}-{window[1]:.1f} s"
        exclude = window
        source: dict = {"moment": [round(window[0], 3), round(window[1], 3)]}
    else:
        assert query_video is not None
        qfeats = encode_video(query_video, enc, fps=fps, should_stop=should_stop)
        window = check_window(query_window, qfeats.duration, "the query clip's window") if query_window is not None \
            else (0.0, qfeats.duration)
        qvec = clip_query_vector(_unit(qfeats.visual - centre), qfeats.times, window)
        label = f"clip {Path(query_video).name}" + (f" {window[0]:.1f}-{window[1]:.1f} s" if query_window is not None else "")
        source = {"video": Path(query_video).name, "window": [round(window[0], 3), round(window[1], 3)]}
    index = _index_for(space, fps, num_clips, mask)
    sim, scores = score_candidates(index, qvec, scorer)
    ranked = scores
    if exclude is not None:  # windows that overlap the query moment (touching it is fine)
        overlap = np.minimum(index.windows[:, 1], exclude[1]) - np.maximum(index.windows[:, 0], exclude[0])
        ranked = np.where(overlap > 1e-6, -np.inf, scores)
        if not np.isfinite(ranked).any():
            raise QueryError(f"the query moment {exclude[0]:g}-{exclude[1]:g} s leaves no other part of this "
                             f"{feats.duration:.1f} s video to search: choose a shorter moment.")
    moments = top_moments(index, ranked, top_k, nms_threshold)
    separation = top_separation(index, moments[0]) if moments else None
    moments, distinct = judge_clip(index, qvec, sim, moments, window[1] - window[0], scorer, separation)
    tmap = map_scores(index, qvec, scorer, sim, scores)
    return RetrievalResult(str(video), float(feats.duration), feats.encoder_id, label, moments, feats.times.copy(),
                           (space.features @ qvec).astype(np.float64), tmap, scorer or zs.DEFAULT_SCORER,
                           extra={"query_clip": source, "space": "visual features, centred on the video's mean"},
                           distinct=distinct, separation=separation)
