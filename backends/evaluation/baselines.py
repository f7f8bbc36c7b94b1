"""Blind moment-retrieval baselines of Otani et al. (BMVC 2020, "Uncovering hidden challenges in query-based
video moment retrieval"): they never look at the video, and only `prior-verb` reads the query.

- `uniform`: windows with start and end drawn uniformly in the video (two uniform points, sorted).
- `prior`: a 2-D Gaussian KDE (Scott's bandwidth) over (start / duration, length / duration) of the training
  moments; per query, 100 samples, NMS at 0.45, the top 10 ranked by KDE likelihood.
- `prior-verb`: the same KDE fitted per first verb of the query (the 50 most frequent verbs of the training
  queries); other queries use the unconditional prior.

Results are scored with the Charades-STA protocol (strict IoU > m, NMS 0.5 before top-k) and averaged over runs.

First-verb heuristic (no NLP model offline): lower-case the query, split into words, skip leading words that
are determiners, subjects, auxiliaries or adverbs ("a", "the", "person", "someone", "is", "then", "starts",
...), take the first remaining word and reduce it to a stem with suffix rules (-ies -> y, -es after
s/x/z/ch/sh, -s, -ing, -ed, undoubled final consonant, final -e dropped) plus a small table of irregular
past forms. The stem only needs to group inflections of one verb ("takes", "taking", "took" -> "tak").
Leading prepositions are skipped too; the stems that come first in at least 5 training queries form a verb
vocabulary, and a query's verb is its first word whose stem is in that vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gaussian_kde

from backends.analysis.windows import batched_nms
from backends.core.errors import AnnotationError, MomentLensError
from backends.evaluation.annotations import AnnotatedQuery
from backends.evaluation.charades import CHARADES_STA
from backends.evaluation.metrics import Protocol, metric_names, recall_metrics

BASELINES = ("uniform", "prior", "prior-verb")
PRIOR_SAMPLES = 100  # windows sampled from the KDE per query
PRIOR_NMS = 0.45  # NMS threshold over the samples
PRIOR_TOP_K = 10  # windows kept per query
NUM_VERBS = 50  # verbs with their own KDE in prior-verb
GRID = 96  # the KDE is tabulated on a GRID x GRID lattice and interpolated for ranking
USE_VERB_VOCABULARY = False  # True: a query's verb is its first word in the corpus verb vocabulary
MIN_REL_LENGTH = 1e-3  # sampled windows shorter than this fraction of the video are discarded

# --- first verb -------------------------------------------------------------------------------
_SKIP = set(
    "a an the this that his her their its one another other two some "
    "person persons people someone somebody man woman boy girl guy lady child kid individual "
    "he she they it we i you who "
    "is are was were be been being am gets got get "
    "then also first again just now still and so suddenly quickly slowly finally later "
    "begins begin began starts start started continues continue proceeds tries try to "
    "seen can will".split()
)
_IRREGULAR = {
    "took": "take", "taken": "take", "sat": "sit", "ran": "run", "ate": "eat", "threw": "throw",
    "thrown": "throw", "held": "hold", "drank": "drink", "stood": "stand", "went": "go", "goes": "go",
    "came": "come", "gave": "give", "made": "make", "woke": "wake", "awoke": "awake", "put": "put",
    "does": "do", "did": "do", "done": "do", "has": "have", "had": "have", "left": "leave", "laid": "lay",
    "lies": "lie", "lying": "lie", "lay": "lie", "shut": "shut", "wrote": "write", "read": "read",
    "swept": "sweep", "brought": "bring", "bought": "buy", "caught": "catch", "fell": "fall",
}
_VOWELS = set("aeiou")


def verb_stem(word: str) -> str:
    """Reduce an inflected verb to a grouping stem ("takes"/"taking"/"took" -> "tak")."""
    w = _IRREGULAR.get(word, word)
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("es") and (w[-3] in "sxz" or w[-4:-2] in ("ch", "sh")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "lsz":
        w = w[:-1]  # putt -> put, sitt -> sit (but dress, pull stay)
    if len(w) > 3 and w.endswith("e") and w[-2] not in _VOWELS:
        w = w[:-1]  # take -> tak, so that take / taking / takes meet
    return w


_NOT_VERBS = set(
    "in at on after with both as same second there next b up while when before from into by of for near "
    "inside behind over under across around through what where then".split()
)


def first_verb(query: str, vocabulary: set[str] | None = None) -> str | None:
    """Stem of the first verb of a query by the heuristic above (None when none is found).

    Without a vocabulary: the first word that is neither a subject/auxiliary word nor a preposition.
    With one (stems known to be verbs, see `verb_vocabulary`): the first word whose stem is in it, so that
    "in the kitchen a person opens the door" gives "open".
    """
    for tok in re.findall(r"[a-z]+", query.lower()):
        if tok in _SKIP or tok in _NOT_VERBS:
            continue
        stem = verb_stem(tok)
        if vocabulary is None:
            return stem
        if stem in vocabulary:
            return stem
    return None


def verb_vocabulary(queries: Sequence[str], min_count: int = 5) -> set[str]:
    """Stems that come first (after the subject) in at least `min_count` queries: the corpus's verbs."""
    counts = Counter(first_verb(q) for q in queries)
    return {v for v, c in counts.items() if v and c >= min_count}


# --- the prior ----------------------------------------------------------------------------------
def relative_moments(queries: Sequence[AnnotatedQuery]) -> np.ndarray:
    """(N, 2) array of (start / duration, length / duration) of every ground-truth window."""
    rows = []
    for q in queries:
        if not q.duration:
            raise AnnotationError(
                f"query {q.qid} of video {q.vid} has no duration; pass the Charades_v1 csv files with --durations."
            )
        for s, e in q.windows:
            rows.append((s / q.duration, (e - s) / q.duration))
    return np.array(rows, dtype=float).reshape(-1, 2)


@dataclass
class MomentPrior:
    """A 2-D Gaussian KDE over (relative start, relative length), tabulated for fast likelihoods."""

    kde: gaussian_kde
    grid_x: np.ndarray = field(repr=False)
    grid_y: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)  # (GRID, GRID) KDE values on grid_x x grid_y

    @classmethod
    def fit(cls, rel_moments: np.ndarray) -> MomentPrior:
        if len(rel_moments) < 3:
            raise MomentLensError("a moment prior needs at least 3 training moments.")
        try:
            kde = gaussian_kde(rel_moments.T)  # Scott's rule bandwidth
        except np.linalg.LinAlgError:
            # identical (or collinear) moments: a tiny fixed jitter makes the covariance invertible
            jitter = np.random.default_rng(0).normal(0.0, 1e-3, rel_moments.shape)
            kde = gaussian_kde((rel_moments + jitter).T)
        pad = 3.0 * np.sqrt(np.diag(kde.covariance))
        lo, hi = rel_moments.min(0) - pad, rel_moments.max(0) + pad
        gx, gy = np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID)
        xx, yy = np.meshgrid(gx, gy, indexing="ij")
        dens = kde(np.vstack([xx.ravel(), yy.ravel()])).reshape(GRID, GRID)
        return cls(kde, gx, gy, dens)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws from the KDE: a random training moment plus Gaussian noise with the KDE's covariance."""
        data = self.kde.dataset.T
        noise = rng.standard_normal((n, data.shape[1])) @ np.linalg.cholesky(self.kde.covariance).T
        return data[rng.integers(0, len(data), size=n)] + noise  # (n, 2): relative start, relative length

    def likelihood(self, points: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the tabulated KDE at (relative start, relative length) points."""
        def frac(v: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            t = np.clip((v - g[0]) / (g[1] - g[0]), 0, len(g) - 1 - 1e-9)
            i = np.floor(t).astype(int)
            return i, t - i
        i, fx = frac(points[..., 0], self.grid_x)
        j, fy = frac(points[..., 1], self.grid_y)
        d = self.density
        return ((1 - fx) * (1 - fy) * d[i, j] + fx * (1 - fy) * d[i + 1, j]
                + (1 - fx) * fy * d[i, j + 1] + fx * fy * d[i + 1, j + 1])


def prior_windows(prior: MomentPrior, num_queries: int, rng: np.random.Generator) -> np.ndarray:
    """(num_queries, PRIOR_TOP_K, 2) relative windows: 100 KDE samples each, NMS 0.45, top 10 by likelihood.

    Rows padded with NaN where fewer than 10 windows survive.
    """
    pts = prior.sample(num_queries * PRIOR_SAMPLES, rng).reshape(num_queries, PRIOR_SAMPLES, 2)
    score = prior.likelihood(pts)
    start = np.clip(pts[..., 0], 0.0, 1.0)
    end = np.clip(pts[..., 0] + pts[..., 1], 0.0, 1.0)
    score = np.where(end - start >= MIN_REL_LENGTH, score, -np.inf)  # empty after clipping: rank last
    wins = np.stack([start, end], axis=-1)
    keep = batched_nms(wins, score, PRIOR_NMS, PRIOR_TOP_K)
    out = np.take_along_axis(wins, np.maximum(keep, 0)[..., None], axis=1)
    valid = (keep >= 0) & np.isfinite(np.take_along_axis(score, np.maximum(keep, 0), axis=1))
    out[~valid] = np.nan
    return out


def uniform_windows(num_queries: int, rng: np.random.Generator, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(num_queries, k, 2) relative windows with start and end uniform in [0, 1], and random scores."""
    pts = np.sort(rng.random((num_queries, k, 2)), axis=-1)
    return pts, rng.random((num_queries, k))


# --- scoring --------------------------------------------------------------------------------------
def _gt_array(queries: Sequence[AnnotatedQuery]) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth windows padded to (Q, G, 2) with NaN, and durations (Q,)."""
    g = max(len(q.windows) for q in queries)
    gt = np.full((len(queries), g, 2), np.nan)
    for i, q in enumerate(queries):
        gt[i, : len(q.windows)] = q.windows
    dur = np.array([q.duration or np.nan for q in queries], dtype=float)
    if np.isnan(dur).any():
        raise AnnotationError("every test query needs a duration; pass the Charades_v1 csv files with --durations.")
    return gt, dur


def score_ranked_windows(pred: np.ndarray, gt: np.ndarray, protocol: Protocol = CHARADES_STA) -> dict[str, float]:
    """Metrics of ranked windows (Q, K, 2) (NaN rows = no window; NMS already applied) against (Q, G, 2)."""
    inter = np.clip(
        np.minimum(pred[:, :, None, 1], gt[:, None, :, 1]) - np.maximum(pred[:, :, None, 0], gt[:, None, :, 0]), 0, None
    )
    union = (pred[..., 1] - pred[..., 0])[:, :, None] + (gt[..., 1] - gt[..., 0])[:, None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.nan_to_num(inter / union, nan=0.0).max(axis=2)  # (Q, K): best GT window per prediction
    best = {n: iou[:, :n].max(axis=1) for n in protocol.ranks}
    return recall_metrics(best, iou[:, 0], protocol)


@dataclass
class BaselineResult:
    """Mean and standard deviation over runs of each metric (fractions in [0, 1])."""

    name: str
    protocol: Protocol
    seed: int
    runs: int
    mean: dict[str, float]
    std: dict[str, float]
    num_queries: int
    num_conditioned: int = 0  # prior-verb: test queries whose verb has its own KDE

    def to_dict(self) -> dict:
        return {"baseline": self.name, "protocol": self.protocol.to_dict(), "seed": self.seed, "runs": self.runs,
                "num_queries": self.num_queries, "num_conditioned": self.num_conditioned, "unit": "fraction",
                **self.mean, "std": self.std}


def run_baseline(
    name: str, train_queries: Sequence[AnnotatedQuery], test_queries: Sequence[AnnotatedQuery],
    seed: int = 0, runs: int = 10, protocol: Protocol = CHARADES_STA,
) -> BaselineResult:
    """Run a blind baseline `runs` times (seeded) and average its metrics under `protocol`."""
    if name not in BASELINES:
        raise MomentLensError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
    if not test_queries:
        raise AnnotationError("there are no test queries to evaluate.")
    if runs < 1:
        raise MomentLensError("--runs must be at least 1.")
    gt, dur = _gt_array(test_queries)
    rel_gt = gt / dur[:, None, None]  # score in relative time: IoU is scale-invariant
    rng = np.random.default_rng(seed)
    top_n = max(protocol.ranks)
    groups: list[tuple[np.ndarray, MomentPrior]] = []
    num_conditioned = 0
    if name != "uniform":
        groups, num_conditioned = _prior_groups(name, train_queries, test_queries)
    per_run = []
    for _ in range(runs):
        if name == "uniform":
            wins, scores = uniform_windows(len(test_queries), rng)
        else:
            wins = np.full((len(test_queries), PRIOR_TOP_K, 2), np.nan)
            for idx, prior in groups:
                wins[idx] = prior_windows(prior, len(idx), rng)
            scores = -np.arange(PRIOR_TOP_K, dtype=float)[None, :].repeat(len(test_queries), 0)  # likelihood order
            scores = np.where(np.isnan(wins[..., 0]), -np.inf, scores)
        if protocol.nms_threshold is not None:  # the protocol's NMS before top-k
            keep = batched_nms(np.nan_to_num(wins), scores, protocol.nms_threshold, top_n)
        else:
            keep = np.argsort(-scores, axis=1, kind="stable")[:, :top_n]
        ranked = np.take_along_axis(wins, np.maximum(keep, 0)[..., None], axis=1)
        ranked[keep < 0] = np.nan
        ranked[np.isinf(np.take_along_axis(scores, np.maximum(keep, 0), axis=1))] = np.nan
        per_run.append(score_ranked_windows(ranked, rel_gt, protocol))
    names = metric_names(protocol)
    table = np.array([[r[k] for k in names] for r in per_run])
    return BaselineResult(name, protocol, seed, runs, dict(zip(names, table.mean(0).tolist())),
                          dict(zip(names, table.std(0).tolist())), len(test_queries), num_conditioned)


def _prior_groups(name: str, train_queries: Sequence[AnnotatedQuery],
                 test_queries: Sequence[AnnotatedQuery]) -> tuple[list[tuple[np.ndarray, MomentPrior]], int]:
    """Test-query index groups, each with the KDE it samples from."""
    overall = MomentPrior.fit(relative_moments(train_queries))
    if name == "prior":
        return [(np.arange(len(test_queries)), overall)], 0
    vocab = verb_vocabulary([q.query for q in train_queries]) if USE_VERB_VOCABULARY else None
    train_verbs = [first_verb(q.query, vocab) for q in train_queries]
    top = [v for v, _ in Counter(v for v in train_verbs if v).most_common(NUM_VERBS)]
    test_verbs = np.array([first_verb(q.query, vocab) or "" for q in test_queries], dtype=object)
    groups, conditioned = [], 0
    for verb in top:
        idx = np.flatnonzero(test_verbs == verb)
        if len(idx) == 0:
            continue
        members = [q for q, v in zip(train_queries, train_verbs) if v == verb]
        groups.append((idx, MomentPrior.fit(relative_moments(members))))
        conditioned += len(idx)
    rest = np.flatnonzero(~np.isin(test_verbs, top))
    if len(rest):
        groups.append((rest, overall))
    return groups, conditioned


def prior_baseline_metrics(
    train_queries: Sequence[AnnotatedQuery], test_queries: Sequence[AnnotatedQuery], seed: int = 0, runs: int = 10,
    name: str = "prior",
) -> dict:
    """The blind prior's metrics (mean over runs, Charades-STA protocol) to show beside a model's numbers."""
    return run_baseline(name, train_queries, test_queries, seed=seed, runs=runs).to_dict()
