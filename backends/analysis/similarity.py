"""Temporal self-similarity: RepNet / cosine TSM, boundary strength, PSVL-style event proposals.

Pure functions on arrays (docs/methods/repnet-tsm.md, docs/methods/events.md); the zero-shot scorers
reuse `boundary_strength` and `event_proposals` on the clip grid. `similarity_from_features` assembles the
view's `SimilarityResult`; `backends.views.similarity.self_similarity_view` is the entry point that the app,
the widgets and the CLI call.

Conventions: `times[i]` is the instant of sample i; a boundary between samples i-1 and i is placed at
their midpoint, so `boundary_strength(...)[i]` scores that midpoint (index 0 has no left side and is 0).
Events cover [0, duration] without gaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from backends.core.errors import MomentLensError

KINDS = ("repnet", "cosine")


FEATURE_KINDS = ("visual", "joint")


BOUNDARY_SOURCES = ("novelty", "events")  # peaks of the boundary-strength curve, or edges of the k-means events


REPNET_TAU = 13.544  # RepNet's softmax temperature


MAX_VIEW_FRAMES = 3000  # a T x T view beyond this is too heavy to draw or ship as JSON




class SimilarityError(MomentLensError):
    """Bad input to the self-similarity view (unknown kind, too few frames)."""


# --------------------------------------------------------------------------------------------
# matrices
# --------------------------------------------------------------------------------------------
def _as_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise SimilarityError(f"features must be a non-empty (T, D) array, got shape {x.shape}.")
    return x


def squared_distances(features: np.ndarray) -> np.ndarray:
    """(T, T) squared Euclidean distances between rows, clipped at 0 against round-off."""
    x = _as_features(features)
    sq = np.einsum("td,td->t", x, x)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)


def repnet_tsm(features: np.ndarray, tau: float = REPNET_TAU) -> np.ndarray:
    """RepNet TSM (Dwibedi et al. 2020): S_ij = softmax_j(-||x_i - x_j||^2 / tau); rows sum to 1."""
    logits = -squared_distances(features) / tau
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def cosine_tsm(features: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows, in [-1, 1] (a zero row is similar to nothing)."""
    x = _as_features(features)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    xn = x / np.where(norms > 0, norms, 1.0)
    return np.clip(xn @ xn.T, -1.0, 1.0)


def temporal_self_similarity(features: np.ndarray, kind: str = "repnet", tau: float = REPNET_TAU) -> np.ndarray:
    """The TSM of one `kind` ("repnet" or "cosine")."""
    if kind == "repnet":
        return repnet_tsm(features, tau)
    if kind == "cosine":
        return cosine_tsm(features)
    raise SimilarityError(f"unknown similarity kind {kind!r}; available: {', '.join(KINDS)}.")


# --------------------------------------------------------------------------------------------
# boundaries
# --------------------------------------------------------------------------------------------
def checkerboard_kernel(half_width: int) -> np.ndarray:
    """Foote's Gaussian-tapered checkerboard kernel, (2L, 2L): +1 within past/future blocks, -1 across."""
    offsets = np.arange(-half_width, half_width) + 0.5  # kernel centred between samples L-1 and L
    sign = np.sign(offsets)
    taper = np.exp(-0.5 * (offsets / (0.5 * half_width)) ** 2)
    return np.outer(sign * taper, sign * taper)


def boundary_strength(
    tsm_or_features: np.ndarray, kernel_half_width: int = 4, *, is_similarity: bool | None = None
) -> np.ndarray:
    """Novelty curve (Foote 2000): a checkerboard kernel slid along the diagonal of a similarity matrix.

    Takes a (T, T) similarity matrix, or (T, D) features whose cosine TSM is used (a square input is taken
    as a matrix unless `is_similarity=False`). Returns (T,) values, where
    entry i scores a boundary between samples i-1 and i: high when the past block is self-similar, the
    future block is self-similar and the two are dissimilar. Computed as the kernel-weighted mean
    similarity within the blocks (diagonal excluded) minus the weighted mean across them; with the full
    kernel this is Foote's kernel correlation up to scale, and near the ends, where the kernel is cut to
    the video, it stays balanced (a constant matrix scores 0 everywhere). Entry 0 is 0.
    """
    x = np.asarray(tsm_or_features, dtype=np.float64)
    if is_similarity is None:
        is_similarity = x.ndim == 2 and x.shape[0] == x.shape[1]
    sim = x if is_similarity else cosine_tsm(x)
    n = sim.shape[0]
    half = max(1, int(kernel_half_width))
    kernel = checkerboard_kernel(half)
    within = np.where(kernel > 0, kernel, 0.0)
    np.fill_diagonal(within, 0.0)  # a frame's similarity to itself says nothing about a boundary
    across = np.where(kernel < 0, -kernel, 0.0)
    strength = np.zeros(n)
    for i in range(1, n):
        lo, hi = max(0, i - half), min(n, i + half)
        window = slice(lo - (i - half), hi - (i - half))
        block = sim[lo:hi, lo:hi]
        w_in, w_across = within[window, window], across[window, window]
        mean_in = (w_in * block).sum() / w_in.sum() if w_in.sum() > 0 else float(block.diagonal().mean())
        strength[i] = float(mean_in - (w_across * block).sum() / w_across.sum())
    return strength


def midpoints(times: np.ndarray) -> np.ndarray:
    """(T,) boundary instants: entry i is the midpoint of samples i-1 and i (entry 0 is times[0])."""
    t = np.asarray(times, dtype=np.float64)
    out = t.copy()
    out[1:] = 0.5 * (t[:-1] + t[1:])
    return out


def detect_boundaries(
    strength: np.ndarray,
    times: np.ndarray,
    min_distance: float = 2.0,
    threshold_std: float = 1.0,
) -> np.ndarray:
    """Boundary instants (seconds) at peaks of a boundary-strength curve.

    A peak must reach mean + `threshold_std` * std of the curve and lie at least `min_distance` seconds
    from a higher peak (scipy `find_peaks`; the spacing is converted with the median sample step).
    """
    from scipy.signal import find_peaks  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options

    s = np.asarray(strength, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if len(s) < 3:
        return np.zeros(0)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    distance = max(1, int(round(min_distance / step))) if step > 0 else 1
    inner = s[1:]  # entry 0 is not a boundary
    height = inner.mean() + threshold_std * inner.std()
    peaks, _ = find_peaks(np.concatenate([[-np.inf], inner, [-np.inf]]), height=height, distance=distance)
    return midpoints(t)[peaks]  # padded index p is curve index p


def boundary_f1(pred: ArrayLike, truth: ArrayLike, tolerance: float = 1.0) -> dict[str, float]:
    """Boundary precision / recall / F1: a prediction is a hit if matched one-to-one to a true boundary
    within +-`tolerance` seconds (maximum matching, as mir_eval's boundary detection). Empty -> 0."""
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options

    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    g = np.asarray(truth, dtype=np.float64).reshape(-1)
    hits = 0
    if len(p) and len(g):
        dist = np.abs(p[:, None] - g[None, :])
        within = dist <= tolerance + 1e-9
        # maximise the number of matches (cost -1 per hit), nearest pairs on ties
        cost = np.where(within, -1.0 + dist / (10.0 * (tolerance + 1.0)), 0.0)
        rows, cols = linear_sum_assignment(cost)
        hits = int(within[rows, cols].sum())
    precision = hits / len(p) if len(p) else 0.0
    recall = hits / len(g) if len(g) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "hits": hits,
            "predicted": int(len(p)), "true": int(len(g))}


# --------------------------------------------------------------------------------------------
# PSVL-style events
# --------------------------------------------------------------------------------------------
@dataclass
class EventSegmentation:
    """k-means labels of the samples and the chosen number of clusters."""

    labels: np.ndarray  # (T,) int cluster id of each sample
    n_clusters: int
    silhouettes: dict[int, float] = field(default_factory=dict)  # k -> silhouette (model selection)


def _row_embedding(sim: np.ndarray, times: np.ndarray, duration: float, time_weight: float,
                   max_dims: int) -> np.ndarray:
    """TSM rows with a scaled time column; rows of long videos are projected to `max_dims` PCA dims."""
    rows = sim - sim.mean(axis=0, keepdims=True)
    if rows.shape[1] > max_dims:
        u, s, _ = np.linalg.svd(rows, full_matrices=False)  # deterministic; distances mostly kept
        rows = u[:, :max_dims] * s[:max_dims]
    # the time column spans time_weight * sqrt(T): the order of a typical row distance (T entries each)
    tcol = time_weight * math.sqrt(len(times)) * (np.asarray(times) / max(duration, 1e-9))
    return np.hstack([rows, tcol[:, None]])


def segment_events(
    features: np.ndarray,
    times: np.ndarray,
    duration: float | None = None,
    n_events: int | None = None,
    *,
    time_weight: float = 1.0,
    min_event_seconds: float = 2.0,
    max_clusters: int = 40,
    seed: int = 0,
    n_init: int = 4,
    max_dims: int = 64,
) -> EventSegmentation:
    """PSVL step 1: k-means on the rows of the cosine TSM plus a scaled time column.

    The time column keeps clusters contiguous in time. Without `n_events`, the number of clusters k is
    chosen by the silhouette score over k = 2 .. min(max_clusters, duration / min_event_seconds, T - 1).
    Deterministic: KMeans(random_state=seed, n_init=n_init).
    """
    from sklearn.cluster import KMeans  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options

    x = _as_features(features)
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    if duration is None:
        duration = _duration_from_times(t)
    if n < 3:
        return EventSegmentation(np.zeros(n, dtype=int), 1)
    z = _row_embedding(cosine_tsm(x), t, duration, time_weight, max_dims)

    def fit(k: int) -> np.ndarray:
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(z)

    # one thread: these problems are small, and OpenMP start-up on a shared CPU costs 10x the fit
    with threadpool_limits(limits=1):
        if n_events is not None:
            k = int(min(max(1, n_events), n))
            labels = fit(k) if k > 1 else np.zeros(n, dtype=int)
            return EventSegmentation(labels, k)
        return _select_k(z, fit, duration, n, min_event_seconds, max_clusters, seed)


def _select_k(z: np.ndarray, fit: Callable[[int], np.ndarray], duration: float, n: int, min_event_seconds: float,
              max_clusters: int, seed: int) -> EventSegmentation:
    """The k with the best silhouette among 2 .. k_max (ties: the smaller k)."""
    from sklearn.metrics import silhouette_score  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options

    k_max = int(min(max_clusters, math.floor(duration / min_event_seconds), n - 1))
    best, scores = None, {}
    for k in range(2, max(2, k_max) + 1):
        labels = fit(k)
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(z, labels, sample_size=min(n, 2000), random_state=seed))
        if best is None or scores[k] > scores[best[0]]:
            best = (k, labels)
    if best is None:
        return EventSegmentation(np.zeros(n, dtype=int), 1, scores)
    return EventSegmentation(best[1], best[0], scores)


def _duration_from_times(t: np.ndarray) -> float:
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return float(t[-1] + step) if len(t) else 0.0


def atomic_events(labels: np.ndarray, times: np.ndarray, duration: float | None = None) -> np.ndarray:
    """PSVL step 2: maximal runs of one label -> (E, 2) [start, end] seconds covering [0, duration]."""
    t = np.asarray(times, dtype=np.float64)
    lab = np.asarray(labels)
    if duration is None:
        duration = _duration_from_times(t)
    if len(t) == 0:
        return np.zeros((0, 2))
    change = np.nonzero(lab[1:] != lab[:-1])[0] + 1  # first sample of each new run
    edges = np.concatenate([[0.0], midpoints(t)[change], [float(duration)]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def union_proposals(events: np.ndarray, max_span: int | None = None) -> np.ndarray:
    """PSVL step 3: every union of 1..max_span consecutive atomic events, (P, 2), by start then end."""
    ev = np.asarray(events, dtype=np.float64).reshape(-1, 2)
    m = len(ev)
    span = m if max_span is None else max(1, min(int(max_span), m))
    out = [(ev[i, 0], ev[j, 1]) for i in range(m) for j in range(i, min(m, i + span))]
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def event_proposals(
    features: np.ndarray,
    times: np.ndarray,
    duration: float | None = None,
    n_events: int | None = None,
    max_span: int | None = None,
    **segment_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """PSVL-style temporal event proposals (Nam et al. 2021; their code was never released).

    1. cosine TSM of the features; k-means on its rows plus a scaled time column (`segment_events`);
    2. atomic events = maximal runs of one cluster label (`atomic_events`);
    3. proposals = unions of consecutive atomic events (`union_proposals`).
    Returns (atomic_events (E, 2), proposals (P, 2)) in seconds; deterministic.
    """
    t = np.asarray(times, dtype=np.float64)
    if duration is None:
        duration = _duration_from_times(t)
    seg = segment_events(features, t, duration, n_events, **segment_kwargs)
    events = atomic_events(seg.labels, t, duration)
    return events, union_proposals(events, max_span)


# --------------------------------------------------------------------------------------------
# the view
# --------------------------------------------------------------------------------------------
@dataclass
class SimilarityResult:
    """Everything the self-similarity view shows, in plain arrays."""

    kind: str  # "repnet" or "cosine": which matrix `matrix` holds
    times: np.ndarray  # (T,) sample instants, seconds
    matrix: np.ndarray  # (T, T) the TSM of `kind`
    strength: np.ndarray  # (T,) boundary strength (Foote novelty on the cosine TSM); entry i at boundary_times[i]
    boundary_times: np.ndarray  # (T,) where each strength entry sits (midpoints of consecutive samples)
    boundaries: np.ndarray  # (B,) detected boundaries: peaks of `strength`, seconds
    events: np.ndarray  # (E, 2) atomic events from k-means, seconds
    proposals: np.ndarray  # (P, 2) unions of consecutive atomic events, seconds
    labels: np.ndarray  # (T,) k-means cluster of each sample
    n_clusters: int
    duration: float
    encoder: str
    features: str  # "visual" (raw visual features) or "joint" (text-frame embedding)
    fps: float
    params: dict[str, Any] = field(default_factory=dict)  # kernel, threshold, min distance, tau
    video: str = ""

    def to_dict(self, decimals: int = 4) -> dict[str, Any]:
        """The `--json` document (matrix rounded to `decimals`)."""
        return {
            "kind": self.kind,
            "encoder": self.encoder,
            "features": self.features,
            "video": self.video,
            "fps": self.fps,
            "duration": round(float(self.duration), 3),
            "times": [round(float(v), 3) for v in self.times],
            "matrix": np.round(self.matrix, decimals).tolist(),
            "boundaries": [round(float(v), 3) for v in self.boundaries],
            "events": np.round(self.events, 3).tolist(),
            "proposals": np.round(self.proposals, 3).tolist(),
            "strength": np.round(self.strength, decimals).tolist(),
            "n_clusters": int(self.n_clusters),
            "params": self.params,
        }


def similarity_from_features(
    features: np.ndarray,
    times: np.ndarray,
    duration: float | None = None,
    kind: str = "repnet",
    *,
    kernel_seconds: float = 4.0,
    threshold_std: float = 1.0,
    min_distance: float = 2.0,
    tau: float = REPNET_TAU,
    n_events: int | None = None,
    boundaries_from: str = "novelty",
    encoder: str = "",
    feature_kind: str = "visual",
    fps: float | None = None,
    video: str = "",
) -> SimilarityResult:
    """Compute the view from arrays: TSM of `kind`, novelty boundaries, PSVL events and proposals.

    The boundary strength and the events always use the cosine TSM (the RepNet softmax is row-normalised
    and sharply peaked, which suits display and repetition counting more than segmentation).
    `boundaries_from="novelty"` reports the peaks of the strength curve, `"events"` the k-means event edges.
    """
    if kind not in KINDS:
        raise SimilarityError(f"unknown similarity kind {kind!r}; available: {', '.join(KINDS)}.")
    if boundaries_from not in BOUNDARY_SOURCES:
        raise SimilarityError(f"unknown boundary source {boundaries_from!r}; available: {', '.join(BOUNDARY_SOURCES)}.")
    x = _as_features(features)
    t = np.asarray(times, dtype=np.float64)
    if len(t) != len(x):
        raise SimilarityError(f"{len(x)} feature rows but {len(t)} timestamps.")
    if len(t) < 2:
        raise SimilarityError("a self-similarity matrix needs at least 2 sampled frames; raise --fps or use a longer video.")
    if len(t) > MAX_VIEW_FRAMES:
        span = float(t[-1] - t[0]) or 1.0
        raise SimilarityError(
            f"{len(t)} sampled frames make a matrix too large to show; lower --fps to at most "
            f"{MAX_VIEW_FRAMES / span:.2g} or pick a shorter video."
        )
    if duration is None:
        duration = _duration_from_times(t)
    step = float(np.median(np.diff(t)))
    half_width = max(1, int(round(kernel_seconds / step)))
    cosine = cosine_tsm(x)
    strength = boundary_strength(cosine, half_width, is_similarity=True)
    seg = segment_events(x, t, duration, n_events)
    events = atomic_events(seg.labels, t, duration)
    if boundaries_from == "events":
        boundaries = events[1:, 0].copy()
    else:
        boundaries = detect_boundaries(strength, t, min_distance=min_distance, threshold_std=threshold_std)
    matrix = cosine if kind == "cosine" else repnet_tsm(x, tau)
    params = {"kernel_seconds": kernel_seconds, "kernel_half_width": half_width, "threshold_std": threshold_std,
              "min_distance": min_distance, "tau": tau if kind == "repnet" else None,
              "boundaries_from": boundaries_from,
              "boundary_method": "Foote checkerboard novelty on the cosine TSM",
              "event_method": "k-means on cosine TSM rows + time column, k by silhouette"}
    return SimilarityResult(
        kind=kind, times=t, matrix=matrix, strength=strength, boundary_times=midpoints(t),
        boundaries=boundaries, events=events, proposals=union_proposals(events), labels=seg.labels,
        n_clusters=seg.n_clusters, duration=float(duration), encoder=encoder, features=feature_kind,
        fps=float(fps) if fps is not None else 1.0 / step, params=params, video=video,
    )
