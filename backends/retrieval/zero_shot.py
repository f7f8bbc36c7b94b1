"""Zero-shot moment scorers: per-clip query similarity -> one score per candidate moment.

Every scorer is vectorised over candidate windows given as clip-index arrays (`starts`, `ends`,
inclusive): cumulative sums of the similarity curve give each window's inside and outside mean and
variance in O(1), so a full N x N map costs O(N^2) NumPy work and a long video's windowed maps cost
O(#candidates). Scorers are registered by name so the benchmark can compare them.

The default, `z-visual`, adds to the text evidence (`z-contrast`) the visual evidence that a window is one
scene: coherent inside and unlike its neighbours (`visual_local_contrast`). The text evidence alone
happily merges a matching scene with a half-matching neighbour; the visual term keeps windows on cuts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from backends.analysis import similarity

EPS = 1e-8


@dataclass
class ClipContext:
    """Query-independent facts about one clip grid, computed once per video and shared by its queries."""

    visual: np.ndarray | None  # (N, Dv) visual clip features; None: text-only scorers only
    num_clips: int
    # (N,) clips without content (black, blank, fades): they take no part in how a window looks (`visual_prefix`)
    blank: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    # one index serves concurrent queries (web-app workers): its memo is filled under this lock
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def boundary(self) -> np.ndarray:
        """(N+1,) boundary strength at each clip edge (edge e sits before clip e), in [0, 1]."""
        if "boundary" not in self._cache:
            self._cache["boundary"] = clip_boundary_strength(self.visual, self.num_clips)
        return self._cache["boundary"]

    def proposals(self) -> np.ndarray:
        """(P, 2) inclusive clip-index windows: PSVL-style unions of consecutive atomic events."""
        if "proposals" not in self._cache:
            self._cache["proposals"] = clip_event_proposals(self.visual, self.num_clips)
        return self._cache["proposals"]

    def memo(self, key: str, arrays: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Cache a query-independent per-candidate array, keyed by the candidate arrays' identity; a few
        candidate sets are kept per key (a video's candidates and its displayed map's cells)."""
        with self._lock:
            entries = self._cache.setdefault(key, [])
            for i, (held, value) in enumerate(entries):
                if len(held) == len(arrays) and all(a is b for a, b in zip(held, arrays)):
                    entries.append(entries.pop(i))  # most recently used last
                    return value
            value = compute()
            entries.append((arrays, value))
            del entries[:-MEMO_SETS]
            return value

    def _visual(self) -> np.ndarray:
        if self.visual is None:
            raise ValueError("this scorer needs the visual clip features of the video")
        return self.visual

    def visual_spread(self) -> float:
        """Standard deviation of the pairwise cosine similarities of the visual clip features (the unit of
        `visual_local_contrast`); at most MAX_SPREAD_CLIPS evenly spaced clips are compared."""
        if "visual_spread" not in self._cache:
            v = self._content_visual()
            if len(v) > MAX_SPREAD_CLIPS:
                v = v[np.linspace(0, len(v) - 1, MAX_SPREAD_CLIPS).round().astype(int)]
            pairs = (v @ v.T)[np.triu_indices(len(v), 1)]
            self._cache["visual_spread"] = float(pairs.std()) if len(pairs) else 0.0
        return self._cache["visual_spread"]

    def visual_contrast(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """`visual_local_contrast` of these candidate windows, computed once per candidate set."""
        return self.memo("visual-contrast", (starts, ends), lambda: visual_local_contrast(self, starts, ends))

    def _content_visual(self) -> np.ndarray:
        v = _unit_rows(self._visual())
        return v if self.blank is None else v[~self.blank]

    def visual_prefix(self) -> np.ndarray:
        """Prefix sums of the unit visual clip features with a leading 0; blank clips add zero."""
        if "visual_prefix" not in self._cache:
            v = _unit_rows(self._visual())
            if self.blank is not None:
                v[self.blank] = 0.0
            self._cache["visual_prefix"] = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)])
        return self._cache["visual_prefix"]

    def content_prefix(self) -> np.ndarray:
        """(N+1,) prefix counts of the clips with content (all clips when none is blank)."""
        if "content_prefix" not in self._cache:
            has = np.ones(self.num_clips) if self.blank is None else (~self.blank).astype(np.float64)
            self._cache["content_prefix"] = np.concatenate([[0.0], np.cumsum(has)])
        return self._cache["content_prefix"]


@dataclass
class ClipSignals:
    """What a scorer may look at: one query's per-clip similarity and the video's clip context."""

    similarity: np.ndarray  # (N,) cosine of each clip's joint embedding with the query
    context: ClipContext | None = None  # shared per video; built from `visual` when omitted
    visual: np.ndarray | None = None  # (N, Dv) convenience: used only when `context` is None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.similarity = np.asarray(self.similarity, dtype=np.float64)
        if self.context is None:
            self.context = ClipContext(self.visual, len(self.similarity))

    @property
    def clip_context(self) -> ClipContext:
        """The video's clip context (always set after __post_init__)."""
        assert self.context is not None
        return self.context

    @property
    def num_clips(self) -> int:
        return len(self.similarity)

    def prefix(self) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums of s and s^2 with a leading 0 (window sums in O(1))."""
        if "prefix" not in self._cache:
            s = self.similarity
            self._cache["prefix"] = (np.concatenate([[0.0], np.cumsum(s)]),
                                     np.concatenate([[0.0], np.cumsum(s * s)]))
        return self._cache["prefix"]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + EPS)


def window_stats(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inside/outside counts, means and variances of the similarity for windows [starts, ends] (inclusive)."""
    c1, c2 = signals.prefix()
    n = signals.num_clips
    starts = np.asarray(starts)
    ends = np.asarray(ends)
    n_in = (ends - starts + 1).astype(np.float64)
    n_out = n - n_in
    sum_in = c1[ends + 1] - c1[starts]
    sq_in = c2[ends + 1] - c2[starts]
    sum_out = c1[-1] - sum_in
    sq_out = c2[-1] - sq_in
    mean_in = sum_in / n_in
    mean_out = np.divide(sum_out, n_out, out=np.full_like(sum_out, c1[-1] / n), where=n_out > 0)
    var_in = np.maximum(sq_in / n_in - mean_in**2, 0.0)
    var_out = np.divide(sq_out, n_out, out=np.zeros_like(sq_out), where=n_out > 0) - np.where(n_out > 0, mean_out**2, 0.0)
    return n_in, n_out, mean_in, mean_out, var_in, np.maximum(var_out, 0.0)


# --- video structure: boundaries, coherence, event proposals --------------------------------------
def clip_boundary_strength(visual: np.ndarray | None, num_clips: int, context: int = 2) -> np.ndarray:
    """(N+1,) strength of each clip edge (edge e sits before clip e), in [0, 1]: the checkerboard novelty of
    the visual self-similarity (`backends.analysis.similarity.boundary_strength`, Foote 2000) on the clip grid,
    normalised by the largest interior edge. The video's own start and end count as full boundaries (1).
    """
    out = np.zeros(num_clips + 1)
    out[0] = out[-1] = 1.0
    if visual is None or num_clips < 2:
        return out
    novelty = similarity.boundary_strength(np.asarray(visual, dtype=np.float64), kernel_half_width=context,
                                           is_similarity=False)  # entry i: between clips i-1 and i
    d = np.clip(novelty[1:num_clips], 0.0, None)
    if d.max() > 0:
        d = d / d.max()
    out[1:-1] = d
    return out


def inside_coherence(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine of the visual clip features with content inside each window (||sum v||^2 / n^2)."""
    csum = signals.clip_context.visual_prefix()
    count = signals.clip_context.content_prefix()
    out = np.empty(len(starts))
    chunk = 1 << 14  # bounded memory for long videos
    for i in range(0, len(starts), chunk):
        s, e = starts[i:i + chunk], ends[i:i + chunk]
        total = csum[e + 1] - csum[s]
        n = np.maximum(count[e + 1] - count[s], 1.0)
        out[i:i + chunk] = (total * total).sum(1) / (n * n)
    return out


def visual_local_contrast(context: ClipContext, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How much each window is a visual unit of its own: the mean cosine of its visual clip features with
    each other minus their mean cosine with the clips of two flanks as long as the window (one each side,
    cut at the video's ends), divided by the spread of the video's pairwise clip similarities.

    A window that covers one shot exactly scores high (coherent inside, unlike its neighbours); one inside a
    shot scores ~0 (its flanks look the same); one across a cut scores low. 0 where there are no flanks
    (the whole video) or no visual features. Clips without content (`ClipContext.blank`) count neither inside
    nor in a flank: a window is no unit of its own for being unlike a black frame beside it (on Megamind.avi
    "everything after the black first frame" won every query that way). Query-independent: computed once
    per video.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if context.visual is None or context.num_clips < 2:
        return np.zeros(len(starts))
    # float32 halves the memory traffic of the gathers; differences of prefix rows keep ~1e-4 relative error
    csum = context.visual_prefix().astype(np.float32)
    count = context.content_prefix()
    n = context.num_clips
    length = ends - starts + 1
    left = np.maximum(0, starts - length)
    right = np.minimum(n, ends + 1 + length)
    out = np.empty(len(starts))
    chunk = 1 << 12  # bounded memory for long videos
    for i in range(0, len(starts), chunk):
        s, e, lo, hi = starts[i:i + chunk], ends[i:i + chunk], left[i:i + chunk], right[i:i + chunk]
        inside = csum[e + 1] - csum[s]
        flanks = (csum[s] - csum[lo]) + (csum[hi] - csum[e + 1])
        n_in = count[e + 1] - count[s]
        n_flank = (count[s] - count[lo]) + (count[hi] - count[e + 1])
        coherence = np.einsum("ij,ij->i", inside, inside) / np.maximum(n_in, 1.0)**2
        cross = np.einsum("ij,ij->i", inside, flanks) / (np.maximum(n_in, 1.0) * np.maximum(n_flank, 1.0))
        out[i:i + chunk] = np.where((n_flank > 0) & (n_in > 0), coherence - cross, 0.0)
    return out / (context.visual_spread() + EPS)


def clip_event_proposals(visual: np.ndarray | None, num_clips: int, max_events: int = 4) -> np.ndarray:
    """PSVL-style proposals on the clip grid (`backends.analysis.similarity.event_proposals`: k-means on TSM rows
    with a time column, atomic events, unions of up to `max_events` consecutive events), at three
    granularities (k = N/16, N/8, N/4 events).

    Returns (P, 2) inclusive clip-index windows; the whole video when there are no visual features.
    """
    if visual is None or num_clips < 4:
        return np.array([[0, num_clips - 1]])
    if num_clips > MAX_EVENT_CLIPS:  # long video: events on a coarser grid, mapped back to clip indices
        edges = np.linspace(0, num_clips, MAX_EVENT_CLIPS + 1).round().astype(int)
        csum = np.concatenate([np.zeros((1, visual.shape[1])), np.cumsum(_unit_rows(visual), axis=0)])
        coarse = (csum[edges[1:]] - csum[edges[:-1]]) / np.diff(edges)[:, None]
        small = clip_event_proposals(coarse, MAX_EVENT_CLIPS, max_events)
        return np.stack([edges[small[:, 0]], edges[small[:, 1] + 1] - 1], axis=1)
    centres = np.arange(num_clips) + 0.5  # clip i spans [i, i + 1) in clip units
    props: set[tuple[int, int]] = set()
    for k in sorted({max(2, num_clips // 16), max(2, num_clips // 8), max(2, num_clips // 4)}):
        _, spans = similarity.event_proposals(visual, centres, duration=float(num_clips), n_events=k,
                                              max_span=max_events, min_event_seconds=1.0)
        props.update((int(round(a)), int(round(b)) - 1) for a, b in spans)
    return np.array(sorted(props))


def proposal_alignment(proposals: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Best temporal IoU of each window with any proposal (windows and proposals in clip units)."""
    s = starts.astype(np.float64)[:, None]
    e = ends.astype(np.float64)[:, None] + 1.0
    ps = proposals[:, 0].astype(np.float64)[None, :]
    pe = proposals[:, 1].astype(np.float64)[None, :] + 1.0
    best = np.zeros(len(starts))
    chunk = max(1, (1 << 22) // max(1, len(proposals)))  # bounded memory: at most ~4M pairs at once
    for i in range(0, len(starts), chunk):
        sl = slice(i, i + chunk)
        inter = np.clip(np.minimum(e[sl], pe) - np.maximum(s[sl], ps), 0.0, None)
        union = (e[sl] - s[sl]) + (pe - ps) - inter
        best[sl] = (inter / union).max(axis=1)
    return best


# --- scorers ---------------------------------------------------------------------------------------
ScorerFn = Callable[[ClipSignals, np.ndarray, np.ndarray], np.ndarray]
SCORERS: dict[str, ScorerFn] = {}
SCORER_NOTES: dict[str, str] = {}
# chosen on realmix_dev and checked on the BSP sets of benchmarks/retrieval.py (best or tied on each)
DEFAULT_SCORER = "z-visual"
MAX_EVENT_CLIPS = 256  # k-means runs on at most this many clips (long videos are pooled first)
MAX_SPREAD_CLIPS = 512  # clips compared for the visual spread of long videos
MEMO_SETS = 4  # candidate sets whose per-candidate arrays a ClipContext keeps
VISUAL_WEIGHT = 2.0  # z-visual: weight of the visual local contrast (both terms are in units of a spread)


_Scorer = TypeVar("_Scorer", bound=Callable[..., np.ndarray])


def register_scorer(name: str, note: str) -> Callable[[_Scorer], _Scorer]:
    """Decorator adding a scorer (signals, starts, ends, **weights) -> scores under `name`, with a one-line note."""

    def deco(fn: _Scorer) -> _Scorer:
        SCORERS[name] = fn
        SCORER_NOTES[name] = note
        return fn
    return deco


def list_scorers() -> list[str]:
    return list(SCORERS)


def get_scorer(name: str | None) -> ScorerFn:
    name = name or DEFAULT_SCORER
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(SCORERS)}")
    return SCORERS[name]


@register_scorer("naive", "mean inside minus mean outside (prefers one-clip windows)")
def score_naive(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    _, _, m_in, m_out, _, _ = window_stats(signals, starts, ends)
    return m_in - m_out


@register_scorer("welch-t", "Welch t-statistic of inside vs outside similarity")
def score_welch_t(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    n_in, n_out, m_in, m_out, v_in, v_out = window_stats(signals, starts, ends)
    pooled = signals.similarity.var() + EPS
    # a one-clip side has no variance estimate: use the video's variance for that term
    v_in = np.where(n_in > 1, v_in, pooled)
    v_out = np.where(n_out > 1, v_out, pooled)
    se = np.sqrt(v_in / n_in + v_out / np.maximum(n_out, 1))
    return np.where(n_out > 0, (m_in - m_out) / se, 0.0)


@register_scorer("z-contrast", "(mean in - mean out) * sqrt(n_in n_out / N) / std: two-sample z, video variance")
def score_z_contrast(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    n_in, n_out, m_in, m_out, _, _ = window_stats(signals, starts, ends)
    sigma = signals.similarity.std() + EPS
    return (m_in - m_out) * np.sqrt(n_in * n_out / signals.num_clips) / sigma


@register_scorer("z-boundary", "z-contrast + 0.5 x boundary strength at both edges (visual self-similarity)")
def score_z_boundary(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray, weight: float = 0.5) -> np.ndarray:
    b = signals.clip_context.boundary()
    return score_z_contrast(signals, starts, ends) + weight * (b[starts] + b[ends + 1])


@register_scorer("z-boundary-coherent", "z-boundary + inside coherence of the visual features")
def score_z_boundary_coherent(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray, weight: float = 0.5) -> np.ndarray:
    if signals.clip_context.visual is None:
        return score_z_boundary(signals, starts, ends, weight)
    return score_z_boundary(signals, starts, ends, weight) + weight * inside_coherence(signals, starts, ends)


@register_scorer("z-events", "z-contrast + 2 x best IoU with a PSVL event proposal (k-means on TSM rows)")
def score_z_events(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray, weight: float = 2.0) -> np.ndarray:
    ctx = signals.clip_context
    align = ctx.memo("alignment", (starts, ends), lambda: proposal_alignment(ctx.proposals(), starts, ends))
    return score_z_contrast(signals, starts, ends) + weight * align


@register_scorer("z-visual", "z-contrast + 2 x visual local contrast (coherent inside, unlike equally long flanks)")
def score_z_visual(signals: ClipSignals, starts: np.ndarray, ends: np.ndarray, weight: float = VISUAL_WEIGHT) -> np.ndarray:
    ctx = signals.clip_context
    if ctx.visual is None:
        return score_z_contrast(signals, starts, ends)
    return score_z_contrast(signals, starts, ends) + weight * ctx.visual_contrast(starts, ends)
