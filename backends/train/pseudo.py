"""PSVL pseudo-supervision (Nam et al., ICCV 2021, "Zero-shot natural language video localization"): train the
2D-TAN head on the user's own unlabeled videos with pseudo-queries made from what the encoder recognises.

1. Events: the self-similarity view's PSVL proposals (`analysis.similarity.event_proposals`: k-means on TSM rows
   with a time column -> atomic events -> unions of up to two consecutive events), on the video's visual features,
   frames without content left out.
2. Pseudo-query per event: PSVL composes nouns and a verb detected in the event. Here the nouns are the ImageNet
   class names (the bundled encoder's concepts; a vocabulary in the joint space for CLIP too) and the verbs a
   fixed list of everyday actions, embedded with the encoder's own text side; an event takes the two nouns and
   the verb that fit its mean frame embedding best *relative to the rest of its video* (cosine with the event
   minus cosine with the video: what makes this event different), composed with the template
   "{verb} with a {noun1} and a {noun2}" (PSVL's queries are unordered word sets; a template keeps them
   sentence-like for a sentence encoder).
3. Training: the pairs (pseudo-query, event span) go through the same `train_head` as annotated data.

`momentlens train grounding --pseudo --videos DIR` runs it. It stays a default-off option: the head is not used
unless the user passes it with --head (see the benchmark: pseudo head vs zero-shot on unseen footage).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.analysis.similarity import event_proposals
from backends.core.contracts import ProgressFn
from backends.core.errors import MomentLensError, VideoError
from backends.encoders import Encoder
from backends.encoders.efficientnet_lite import IMAGENET_CLASSES
from backends.features import VideoFeatures, encode_video
from backends.io.video import list_videos
from backends.train.grounding import GroundingSample, make_sample

# everyday actions (gerunds) for the verb slot; written once, not tuned on any benchmark video
VERBS: tuple[str, ...] = (
    "walking", "running", "talking", "sitting", "standing", "holding", "eating", "drinking", "driving", "riding",
    "playing", "dancing", "cooking", "reading", "writing", "turning", "opening", "closing", "carrying", "throwing",
    "swimming", "flying", "moving", "waving", "laughing", "working", "cleaning", "climbing", "showing", "watching",
)
TEMPLATE = "{verb} with {noun1} and {noun2}"  # each noun with its article: "a dog", "an albatross"

_VOCAB: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
_VOCAB_LOCK = threading.Lock()


@dataclass
class PseudoQuery:
    video: str
    query: str
    start: float
    end: float


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def vocabulary(encoder: Encoder) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(nouns, noun embeddings (K, D), verb embeddings (V, D)) in the encoder's joint space, once per encoder."""
    with _VOCAB_LOCK:
        hit = _VOCAB.get(encoder.id)
    if hit is not None:
        return hit
    nouns = sorted({name.split(",")[0].strip() for name in IMAGENET_CLASSES})
    noun_vecs = _unit(np.asarray(encoder.encode_text([with_article(n) for n in nouns]), np.float32))
    verb_vecs = _unit(np.asarray(encoder.encode_text(list(VERBS)), np.float32))
    out = (nouns, noun_vecs, verb_vecs)
    with _VOCAB_LOCK:
        _VOCAB[encoder.id] = out
    return out


def compose(event: np.ndarray, video: np.ndarray, encoder: Encoder) -> str:
    """The pseudo-query of an event from its mean frame embedding and its video's (both (D,))."""
    nouns, noun_vecs, verb_vecs = vocabulary(encoder)
    e, v = _unit(event), _unit(video)
    noun_fit = noun_vecs @ e - noun_vecs @ v
    verb_fit = verb_vecs @ e - verb_vecs @ v
    first, second = np.argsort(-noun_fit)[:2]
    return TEMPLATE.format(verb=VERBS[int(np.argmax(verb_fit))], noun1=with_article(nouns[int(first)]),
                           noun2=with_article(nouns[int(second)]))


# the article follows the sound, not the letter: "a unicycle", "a European fire salamander", "an hourglass"
_A_BEFORE_VOWEL = ("uni", "use", "usu", "ute", "uti", "eu", "ewe", "one", "once")
_AN_BEFORE_H = ("hour", "honest", "honou", "honor", "heir")


def with_article(noun: str) -> str:
    """'a dog', 'an albatross', 'a unicycle', 'an hourglass' (enough for the ImageNet names)."""
    word = noun.lower()
    vowel_sound = (word[:1] in "aeiou" and not word.startswith(_A_BEFORE_VOWEL)) or word.startswith(_AN_BEFORE_H)
    return ("an " if vowel_sound else "a ") + noun


def video_pseudo_queries(feats: VideoFeatures, encoder: Encoder, max_events: int = 8,
                         min_seconds: float = 2.0) -> list[PseudoQuery]:
    """Events of one video (at most `max_events`, the longest first; each at least `min_seconds`) with their
    pseudo-queries. A video with fewer than 4 samples with content gives none."""
    blank, _ = feats.content_free()
    keep = ~blank
    if keep.sum() < 4:
        return []
    times = feats.times[keep]
    visual = feats.visual[keep]
    joint = feats.features[keep]
    n_events = int(np.clip(round(feats.duration / 8.0), 2, 8))  # about one event per 8 s
    _, proposals = event_proposals(visual, times, feats.duration, n_events=n_events, max_span=2, min_event_seconds=1.0)
    spans = [(float(a), float(b)) for a, b in proposals if min_seconds <= b - a < 0.95 * feats.duration]
    spans.sort(key=lambda s: -(s[1] - s[0]))
    video_mean = joint.mean(axis=0)
    out = []
    for start, end in spans[:max_events]:
        inside = (times >= start) & (times < end)
        if not inside.any():
            continue
        query = compose(joint[inside].mean(axis=0), video_mean, encoder)
        out.append(PseudoQuery(str(feats.path), query, float(start), float(end)))
    return out


def pseudo_samples(videos: Sequence[str | os.PathLike], encoder: Encoder, num_clips: int, fps: float = 1.0,
                   progress: ProgressFn | None = None) -> tuple[list[GroundingSample], list[PseudoQuery], list[tuple[str, str]]]:
    """Training pairs of the 2D-TAN head from pseudo-queries on every video under `videos` (folders recursively),
    the pseudo-queries themselves, and the files skipped with the reason. Features come through the cache."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for v in videos:
        p = Path(v)
        try:
            files += list_videos(p, recursive=True) if p.is_dir() else [p]
        except VideoError as err:
            skipped.append((str(p), str(err)))
    if not files:
        raise MomentLensError("no video files found for pseudo-supervision; give a folder of videos with --videos.")
    queries: list[PseudoQuery] = []
    samples: list[GroundingSample] = []
    for i, f in enumerate(files):
        try:
            feats = encode_video(f, encoder, fps=fps)
        except (VideoError, MomentLensError) as err:
            skipped.append((str(f), str(err)))
            continue
        mine = video_pseudo_queries(feats, encoder)
        if mine:
            texts = np.asarray(encoder.encode_text([q.query for q in mine]), np.float32)
            samples += [make_sample(feats.features, feats.times, feats.duration, t, (q.start, q.end), num_clips,
                                    str(f), q.query) for q, t in zip(mine, texts)]
            queries += mine
        if progress is not None:
            progress((i + 1) / len(files), f"events of {i + 1}/{len(files)} videos")
    if not samples:
        raise MomentLensError("no events were found in these videos (each needs a few seconds of content); "
                              "give longer videos or more of them.")
    return samples, queries, skipped
