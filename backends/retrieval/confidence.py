"""How sure a moment is: each moment's confidence against a null of unrelated queries on the same video, and
whether the top moment stands out at all ("no distinct moment").

A zero-shot scorer always returns its top-k windows, on a flat video too, with scores that look as confident as
on a clear match: its scores are only comparable within one query. The yardstick here is the same video asked
about other things. At each clip the query's cosine is first normalised by the cosines of NULL_QUERIES (fixed
everyday descriptions, written once for this purpose and never tuned on any benchmark video) at that clip:
z_q(c) = (cos(q, c) - mean_b cos(b, c)) / std_b cos(b, c) (query-bank normalisation: a clip that fits every
description, like a bright generic frame, stops standing out). For a window w let

    lift_q(w) = mean of z_q over the clips inside w  -  mean of z_q over all the video's clips with content

i.e. how much better the window fits the query than the video as a whole. For each null query the same scorer
picks its own best window, and its lift (normalised by the other null queries) is one draw of "how far the best
window of an unrelated query stands out in this video". A moment's confidence is the share of those null lifts
below its own lift (an empirical p-value turned around, so 0 to 1; ties count half): 0.95 means the moment
stands out more than 95 % of unrelated queries' best windows do. The null includes the scorer's selection (each
null query gets its *best* window), so a maximum over noise does not look significant.

`distinct` needs both: the top moment's confidence >= DISTINCT_LEVEL (it fits the query better than the median
unrelated query's best window fits that one) and a window that looks unlike the rest of the video
(`visual_separation` >= DISTINCT_SEPARATION, measured on the video's distinct samples: a short video's map
repeats each sample over several clips, and repeats are no change). A flat video (one unchanging scene) has no
such window whatever the query; a query that matches everywhere picks the whole video (nothing outside it) or a
low lift; one that matches nowhere has a lift no larger than an unrelated query's: all say "no distinct moment".
The nulls are scored once per video, encoder and scorer (memoised on the video's index), so a query costs a few array sums.

The clip form (query by clip, `engine.clip_null`): a clip has no bank of unrelated queries, so the null is the
searched video asked about itself. CLIP_NULL_DRAWS clips of the video, as long as the query clip and spread evenly
over it, are each asked as a query; each one's best window that does not overlap it gives a lift (as above, with
the draws as the normalising bank) and a match, `window_match`: the cosine between the draw and that window's mean
feature. A moment's confidence is the geometric mean of its lift's share of the draws' lifts and its match's share
of the draws' matches, so that either one near 0 pulls it down. The lift alone says the moment stands out from the
rest of the video, which any query does in a video of two scenes (whichever scene is nearer); the match adds that
the moment looks like the query clip about as much as a clip of this video looks like its best other place (a high
bar in a long continuous shot, whose next seconds look the same, hence the mean rather than the minimum). Chosen on
the library benchmark's two-source videos (every package clip as the query, 504 cases): "distinct" for 87 % of the
clips that are in the video and 29 % of those that are not (lift alone: 83 % and 63 %; the minimum of the two
shares: 83 % and 24 %, but a 4 s clip of a scene in realmix_dev fell to 0.46).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the null bank's vocabulary and rule need no torch: `index stats` imports this module
    from backends.encoders import Encoder

DISTINCT_LEVEL = 0.5  # the top moment stands out more than the median unrelated query's best window ...
DISTINCT_SEPARATION = 3.0  # ... and looks unlike the rest of the video (`visual_separation`)

# Everyday descriptions in several styles (short nouns, actions, sentences), covering indoor/outdoor, people,
# animals, vehicles, nature, food, sport, work and text/graphics. Written once; not tuned on any benchmark video.
NULL_QUERIES: tuple[str, ...] = (
    "a dog", "a cat sleeping on a sofa", "a horse running in a field", "birds flying over the sea",
    "a fish in an aquarium", "a cow grazing", "a car driving on a highway", "a train arriving at a station",
    "an airplane taking off", "a boat on a lake", "a bus in traffic", "a motorcycle",
    "a person cooking in a kitchen", "someone chopping vegetables", "a plate of pasta", "a cup of coffee on a table",
    "people dancing at a party", "a man playing the guitar", "a woman singing on a stage", "children playing in a park",
    "a football match", "a person swimming in a pool", "a skier going down a slope", "a basketball game",
    "a person typing on a laptop", "a meeting in an office", "a teacher writing on a blackboard",
    "a doctor in a hospital", "waves on a beach", "snow falling on mountains", "a forest in autumn",
    "a sunset over the city", "rain on a window", "a desert with sand dunes", "fireworks in the night sky",
    "a waterfall", "a close-up of a flower", "a crowd in a stadium", "a person reading a book",
    "someone washing dishes", "a baby laughing", "an old man walking with a cane", "a person riding a bicycle",
    "a shop with shelves of products", "a construction site with cranes", "text on a screen", "a map",
    "a person brushing their teeth",
)

# What a moment's confidence says, in the words the front ends show beside it (the module docstring has the formula)
MOMENT_CONFIDENCE_MEANING = (f"the share of {len(NULL_QUERIES)} unrelated everyday descriptions whose best window stands "
                             "out from this video less than this moment does for the query")

_BANK: dict[str, np.ndarray] = {}  # encoder id -> (B, D) unit text embeddings of NULL_QUERIES
_BANK_LOCK = threading.Lock()


@dataclass
class Null:
    """The null of one video, encoder and scorer: each unrelated query's best-window lift, sorted."""

    lifts: np.ndarray  # (B,) ascending

    def confidence(self, lift: float) -> float:
        below = np.searchsorted(self.lifts, lift, side="left")
        upto = np.searchsorted(self.lifts, lift, side="right")
        return float((below + 0.5 * (upto - below)) / max(len(self.lifts), 1))


def null_bank(encoder: Encoder) -> np.ndarray:
    """(B, D) unit text embeddings of NULL_QUERIES with `encoder`, computed once per encoder id."""
    with _BANK_LOCK:
        hit = _BANK.get(encoder.id)
    if hit is not None:
        return hit
    vecs = np.asarray(encoder.encode_text(list(NULL_QUERIES)), np.float32).reshape(len(NULL_QUERIES), -1)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-8
    with _BANK_LOCK:
        _BANK[encoder.id] = vecs
    return vecs


def lift(sim: np.ndarray, content: np.ndarray, start: int, end: int) -> float:
    """Mean of `sim` over clips start..end (inclusive) with content, minus its mean over all clips with content."""
    window = content[start : end + 1]
    inside = sim[start : end + 1][window] if window.any() else sim[start : end + 1]
    base = sim[content] if content.any() else sim
    return float(inside.mean() - base.mean())


def leave_one_out_z(sims: np.ndarray, j: int) -> np.ndarray:
    """(M,) column j of `sims` (M clips x B bank queries) normalised at each clip by the other columns' mean and
    standard deviation: a null query's query-bank normalisation, the bank without itself."""
    others = np.delete(sims, j, axis=1)
    return (sims[:, j] - others.mean(axis=1)) / (others.std(axis=1) + 1e-6)


def window_match(features: np.ndarray, query: np.ndarray, content: np.ndarray, start: int, end: int) -> float:
    """Cosine between a query vector and the mean feature of clips start..end (inclusive) with content (all of
    them when none has): how much the window looks like the query clip, not only how it ranks in this video."""
    window = features[start : end + 1]
    keep = content[start : end + 1]
    mean = (window[keep] if keep.any() else window).mean(axis=0)
    q = np.asarray(query, np.float64).reshape(-1)
    return float(mean @ q / (np.linalg.norm(mean) * np.linalg.norm(q) + 1e-12))


def not_distinct_because(top_confidence: float, separation: float | None) -> str | None:
    """Which half of the "distinct" rule (see the module) the top moment fails: "confidence" (below DISTINCT_LEVEL:
    it does not fit the query better than unrelated queries' best windows fit theirs), else "look" (its window looks
    like the rest of the video: `visual_separation` below DISTINCT_SEPARATION, or not measurable), else None."""
    if top_confidence < DISTINCT_LEVEL:
        return "confidence"
    if separation is None or separation < DISTINCT_SEPARATION:
        return "look"
    return None


def is_distinct(top_confidence: float, separation: float | None) -> bool:
    """The "distinct" rule: the top moment's confidence reaches DISTINCT_LEVEL and its window looks unlike the rest
    of the video (`visual_separation` >= DISTINCT_SEPARATION)."""
    return not_distinct_because(top_confidence, separation) is None


def window_clips(clip_times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """Inclusive clip indices of the clips whose centre lies in [start, end] (the nearest clip when none)."""
    centres = clip_times.mean(axis=1)
    inside = np.nonzero((centres >= start - 1e-9) & (centres <= end + 1e-9))[0]
    if len(inside) == 0:
        k = int(np.argmin(np.abs(centres - (start + end) / 2)))
        return k, k
    return int(inside[0]), int(inside[-1])


def visual_separation(visual: np.ndarray, start: int, end: int) -> float:
    """How far clips start..end (inclusive) look from the rest of the video, in units of the video's own
    clip-to-next-clip change: (1 - mean cosine between inside and outside clips) / median (1 - cosine of
    consecutive clips). A window in a flat video differs from the rest about as much as neighbouring clips
    differ from each other (measured 2.1-2.3 on vtest.avi, one static scene); a scene cut away measured 6.2-6.5
    on realmix_dev. 0 when the window is the whole video (nothing outside to stand out from)."""
    v = visual / (np.linalg.norm(visual, axis=1, keepdims=True) + 1e-8)
    inside = np.zeros(len(v), bool)
    inside[start : end + 1] = True
    if inside.all() or not inside.any() or len(v) < 3:
        return 0.0
    between = float(v[inside].mean(axis=0) @ v[~inside].mean(axis=0))  # mean pairwise cosine, in O(M)
    jitter = float(np.median(1.0 - np.sum(v[1:] * v[:-1], axis=1)))
    return (1.0 - between) / max(jitter, 1e-3)


def collapse_repeats(visual: np.ndarray, start: int, end: int) -> tuple[np.ndarray, int, int]:
    """`visual` without consecutive repeats of one row, and clips start..end mapped onto it. A video shorter than
    its map has each sampled frame repeated over several clips (`analysis.temporal_map.resample_to_clips`):
    repeats are no change, and counting them made the median change 0, so any window of a 4 s clip looked
    hundreds of times more separate than the video's own change."""
    v = np.asarray(visual, np.float32)
    if len(v) < 2:
        return v, start, end
    new_run = np.concatenate([[True], np.any(np.abs(v[1:] - v[:-1]) > 1e-7, axis=1)])
    run = np.cumsum(new_run) - 1  # clip -> index of its run
    return v[new_run], int(run[start]), int(run[end])


def moment_confidences(null: Null, sim: np.ndarray, content: np.ndarray, clip_times: np.ndarray,
                       moments: Sequence[tuple[float, float]]) -> list[float]:
    """Each moment's confidence (0 to 1) against the null."""
    out = []
    for start, end in moments:
        a, b = window_clips(clip_times, start, end)
        out.append(round(null.confidence(lift(sim, content, a, b)), 3))
    return out
