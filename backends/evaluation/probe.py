"""Does a video encoder tell scenes apart? A nearest-neighbour probe on clips of real footage.

The footage: several source videos (whole files, or [start, end] parts of one, e.g. the scenes of the
realmix_dev compilation), each cut into short clips written as files. The first `train_fraction` of every
source's time gives the training clips (what an encoder may be trained on, and the probe's gallery); the
rest gives the unseen clips. Each clip is embedded as the mean of the encoder's visual features over it;
features are centred on the gallery's mean and L2-normalised; an unseen clip is assigned the source of its
nearest gallery clip (cosine). Chance is the share of the most common source among the unseen clips.
Telling whole scenes apart on clean clips is easy even for random features (colour statistics suffice);
`perturbed_copies` gives the unseen clips an appearance change (crop, colour, grayscale) for a probe that
asks what the features keep beyond colour.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backends.analysis.cvrl import CvrlConfig, apply_cvrl, sample_cvrl_params
from backends.encoders import Encoder
from backends.features import encode_video
from backends.io.video import VideoReader, read_frames, write_video


@dataclass
class ProbeClips:
    """Clip files per source, split in time."""

    train: dict[str, list[Path]] = field(default_factory=dict)  # source -> clips of its first part
    test: dict[str, list[Path]] = field(default_factory=dict)  # source -> clips of the rest (unseen)
    train_videos: dict[str, Path] = field(default_factory=dict)  # source -> its whole first part as one file

    def counts(self) -> dict[str, tuple[int, int]]:
        return {s: (len(self.train.get(s, [])), len(self.test.get(s, []))) for s in self.train}


@dataclass
class ProbeResult:
    accuracy: float  # 1-NN accuracy on the unseen clips
    chance: float  # share of the most common source among the unseen clips
    sources: int
    train_clips: int
    test_clips: int
    per_source: dict[str, float]  # accuracy per source


def cut_clips(sources: dict[str, tuple[str | os.PathLike, float, float | None]], out_dir: str | os.PathLike, *,
              clip_seconds: float = 1.5, train_fraction: float = 0.6, size: int = 96, fps: float = 15.0) -> ProbeClips:
    """Write every source's [start, end] as clips of `clip_seconds` (shorter side `size` px, `fps`) under
    out_dir/train/SOURCE/ and out_dir/test/SOURCE/ (clips never straddle the train/test boundary), and the
    training part of each source whole as out_dir/train_videos/SOURCE.mp4."""
    out = Path(out_dir)
    clips = ProbeClips()
    for name, (path, start, end) in sources.items():
        frames, times = [], []
        for t, rgb in VideoReader(path, fps=fps, start=start, end=end, size=size):
            frames.append(rgb)
            times.append(t)
        if not frames:
            continue
        t0, t1 = times[0], times[-1] + 1.0 / fps
        split = t0 + train_fraction * (t1 - t0)
        per_clip = max(2, int(round(clip_seconds * fps)))
        for part, lo, hi in (("train", t0, split), ("test", split, t1)):
            idx = [i for i, t in enumerate(times) if lo <= t < hi]
            if part == "train":  # the training part as one video (what an encoder is trained on)
                whole = out / "train_videos" / f"{name}.mp4"
                if not whole.exists():
                    write_video(whole, [frames[i] for i in idx], fps)
                clips.train_videos[name] = whole
            for k in range(0, len(idx) - per_clip + 1, per_clip):
                chunk = [frames[i] for i in idx[k : k + per_clip]]
                target = out / part / name / f"{name}_{part}_{k // per_clip:03d}.mp4"
                if not target.exists():
                    write_video(target, chunk, fps)
                getattr(clips, part).setdefault(name, []).append(target)
    return clips


def perturbed_copies(files: dict[str, list[Path]], out_dir: str | os.PathLike, seed: int = 0,
                     fps: float = 15.0, draws: int = 1) -> dict[str, list[Path]]:
    """The same clips as a camera or grading change would show them: each clip gets one CVRL draw of view 2's
    distribution (random resized crop, flip, colour jitter p=0.8, grayscale p=0.2, blur p=0.1, solarize p=0.2),
    identical on all its frames, `draws` copies per clip; written under out_dir/SOURCE/ (seeded: the same copies
    every run)."""
    out: dict[str, list[Path]] = {}
    for name, paths in sorted(files.items()):
        for k, path in enumerate(paths):
            frames, _ = read_frames(path)
            size = min(frames.shape[1:3])
            for d in range(draws):
                rng = np.random.default_rng([seed, k, d, *name.encode()])
                params = sample_cvrl_params(rng, frames.shape[1], frames.shape[2], 2, CvrlConfig(crop_size=size - size % 2))
                target = Path(out_dir) / name / f"{path.stem}_d{d}.mp4"
                if not target.exists():
                    write_video(target, apply_cvrl(frames, params), fps)
                out.setdefault(name, []).append(target)
    return out


def clip_embeddings(encoder: Encoder, files: list[Path], fps: float = 4.0) -> np.ndarray:
    """(N, visual_dim): the mean visual feature of each clip file (not cached: probes compare encoders)."""
    rows = [encode_video(f, encoder, fps=fps, cache=False, crop_borders=False).visual.mean(axis=0) for f in files]
    return np.stack(rows).astype(np.float32)


def knn_probe(encoder: Encoder, clips: ProbeClips, fps: float = 4.0,
              queries_by_source: dict[str, list[Path]] | None = None) -> ProbeResult:
    """1-nearest-neighbour accuracy of telling which source an unseen clip comes from (`queries_by_source`:
    other query clips, e.g. `perturbed_copies` of the unseen ones)."""
    test = queries_by_source if queries_by_source is not None else clips.test
    names = sorted(s for s in clips.train if test.get(s))
    gallery_files = [f for s in names for f in clips.train[s]]
    gallery_labels = np.array([s for s in names for _ in clips.train[s]])
    query_files = [f for s in names for f in test[s]]
    query_labels = np.array([s for s in names for _ in test[s]])
    gallery = clip_embeddings(encoder, gallery_files, fps)
    queries = clip_embeddings(encoder, query_files, fps)
    centre = gallery.mean(axis=0)

    def unit(x: np.ndarray) -> np.ndarray:
        x = x - centre
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    predicted = gallery_labels[np.argmax(unit(queries) @ unit(gallery).T, axis=1)]
    correct = predicted == query_labels
    chance = Counter(query_labels.tolist()).most_common(1)[0][1] / len(query_labels)
    per_source = {s: float(correct[query_labels == s].mean()) for s in names}
    return ProbeResult(float(correct.mean()), float(chance), len(names), len(gallery_files), len(query_files), per_source)
