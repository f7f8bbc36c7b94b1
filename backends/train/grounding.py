"""Training the 2D-TAN grounding head (docs/methods/2d-tan.md) on annotated videos or precomputed features.

Samples pair a video's clip features (resampled to the head's N clips) with one query's text feature and its
ground-truth window; the loss is BCE against the scaled IoU of each valid map cell. Videos are encoded through
the feature cache (`encode_video`), or features are read from a folder (`VID.npy` (T, D) or `VID.npz` with
`features` and `times`). The head itself and its loader are in `backends.models.grounding`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from backends.analysis import temporal_map as tm
from backends.analysis.windows import nms
from backends.core.contracts import ProgressFn
from backends.core.device import resolve_device
from backends.core.errors import CancelledError, MomentLensError
from backends.encoders.base import Encoder
from backends.features import encode_video
from backends.io.checkpoints import write_checkpoint
from backends.models.grounding import CHECKPOINT_KIND, GroundingConfig, GroundingHead
from backends.retrieval.engine import resolve_annotation_video


@dataclass
class TrainSettings:
    """How the head is trained (saved beside the weights)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class GroundingSample:
    """One (video, query) pair on the map's clip grid."""

    clip_features: np.ndarray  # (N, D) features resampled to the map's clips, unit norm
    text_feature: np.ndarray  # (D,) query embedding, unit norm
    window: tuple[float, float]  # ground truth in seconds
    duration: float  # video length in seconds
    vid: str = ""
    query: str = ""


def scaled_iou_targets(windows: np.ndarray, clip_times: np.ndarray, mask: np.ndarray,
                       t_min: float, t_max: float) -> np.ndarray:
    """(B, N, N) 2D-TAN targets: IoU of every valid cell with each ground truth, scaled to [0, 1]."""
    cells = tm.cell_times(clip_times)  # (N, N, 2) start of clip a, end of clip b
    s, e = cells[..., 0][None], cells[..., 1][None]
    gs, ge = windows[:, 0, None, None], windows[:, 1, None, None]
    inter = np.clip(np.minimum(e, ge) - np.maximum(s, gs), 0.0, None)
    union = np.maximum(e, ge) - np.minimum(s, gs)
    iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    scaled = np.clip((iou - t_min) / (t_max - t_min), 0.0, 1.0)  # 2D-TAN scaled IoU
    return np.where(mask[None], scaled, 0.0).astype(np.float32)


def _stack(samples: Sequence[GroundingSample], config: GroundingConfig):
    n = config.num_clips
    mask = tm.moment_mask(n, config.mask)
    x = np.stack([s.clip_features for s in samples]).astype(np.float32)
    t = np.stack([s.text_feature for s in samples]).astype(np.float32)
    y = np.stack([scaled_iou_targets(np.array([s.window]), tm.clip_grid(s.duration, n), mask,
                                     config.t_min, config.t_max)[0] for s in samples])
    return torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)


@dataclass
class TrainLog:
    """Per-epoch mean training loss."""

    losses: list[float] = field(default_factory=list)


def train_head(
    samples: Sequence[GroundingSample],
    config: GroundingConfig,
    settings: TrainSettings | None = None,
    *,
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool = False,
) -> tuple[GroundingHead, TrainLog]:
    """Train a head with Adam on BCE against scaled IoU (valid cells only)."""
    settings = settings or TrainSettings()
    if not samples:
        raise MomentLensError("no training pairs: check that the annotations name videos that were found.")
    dev = resolve_device(device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    head = GroundingHead(config).to(dev)
    x, t, y = (a.to(dev) for a in _stack(samples, config))
    valid = head.mask > 0  # the 2D-TAN moment mask (a buffer)
    opt = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    log_ = TrainLog()
    bar = None
    if show_progress:
        bar = tqdm(total=settings.epochs, unit="epoch", desc="training grounding head", leave=False)
    steps_per_epoch = max(1, math.ceil(len(samples) / settings.batch_size))
    for epoch in range(settings.epochs):
        head.train()
        order = rng.permutation(len(samples))
        total = 0.0
        for i in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                raise CancelledError("training was cancelled; no checkpoint was written.")
            idx = torch.as_tensor(order[i * settings.batch_size : (i + 1) * settings.batch_size], device=dev)
            logits = head(x[idx], t[idx])
            loss = F.binary_cross_entropy_with_logits(logits[:, valid], y[idx][:, valid])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log_.losses.append(total / len(samples))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{log_.losses[-1]:.4f}")
        if progress is not None:
            progress((epoch + 1) / settings.epochs, f"epoch {epoch + 1}/{settings.epochs}, loss {log_.losses[-1]:.4f}")
    if bar is not None:
        bar.close()
    return head.eval(), log_


# --- building training pairs -------------------------------------------------------------------------
def save_head(head: GroundingHead, path: str | os.PathLike, encoder_id: str, settings: TrainSettings,
              train_log: TrainLog) -> Path:
    """torch.save of weights + config + encoder id + training log, written atomically."""
    return write_checkpoint({
        "kind": CHECKPOINT_KIND,
        "state_dict": {k: v.cpu() for k, v in head.state_dict().items()},
        "config": asdict(head.config),
        "encoder_id": encoder_id,
        "feature_dim": head.config.feature_dim,
        "num_clips": head.config.num_clips,
        "mask": head.config.mask,
        "train": asdict(settings),
        "train_log": asdict(train_log),
    }, path)


def make_sample(features: np.ndarray, times: np.ndarray, duration: float, text_feature: np.ndarray,
                window: Sequence[float], num_clips: int, vid: str = "", query: str = "") -> GroundingSample:
    """Resample a video's frame features to the map's clips and pair them with one query."""
    clip_times = tm.clip_grid(duration, num_clips)
    clips = tm.resample_to_clips(np.asarray(features, np.float32), np.asarray(times, np.float64), clip_times)
    clips = clips / (np.linalg.norm(clips, axis=1, keepdims=True) + 1e-8)
    text = np.asarray(text_feature, np.float32).reshape(-1)
    text = text / (np.linalg.norm(text) + 1e-8)
    return GroundingSample(clips.astype(np.float32), text, (float(window[0]), float(window[1])), float(duration), vid, query)


def load_feature_file(path: Path, fps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A precomputed feature file: `.npy` (T, D) sampled at `fps`, or `.npz` with `features` and `times`."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            feats = z["features"]
            times = z["times"] if "times" in z.files else np.arange(len(feats)) / fps
    else:
        feats = np.load(path)
        times = np.arange(len(feats)) / fps
    if feats.ndim != 2 or len(feats) == 0:
        raise MomentLensError(f"{path.name} must hold a (T, D) feature array, got shape {feats.shape}.")
    return feats.astype(np.float32), np.asarray(times, np.float64)


def samples_from_annotations(queries: Sequence[Any], encoder: Encoder, num_clips: int, video_dir: str | os.PathLike | None = None,
                             features_dir: str | os.PathLike | None = None, fps: float = 1.0,
                             progress: ProgressFn | None = None) -> list[GroundingSample]:
    """Training pairs for annotated queries (`backends.evaluation.annotations.AnnotatedQuery`).

    Features come from `features_dir/VID.npy|.npz` when given (a real user's precomputed features), else
    from encoding `video_dir/VID.*` through the cache. Queries are embedded with `encoder`'s text tower.
    """

    by_vid: dict[str, list] = {}
    for q in queries:
        by_vid.setdefault(q.vid, []).append(q)
    texts = encoder.encode_text([q.query for q in queries])
    text_of = {id(q): texts[i] for i, q in enumerate(queries)}
    out: list[GroundingSample] = []
    for k, (vid, qs) in enumerate(by_vid.items()):
        if features_dir is not None:
            stem = Path(vid).stem
            cands = [Path(features_dir) / f"{stem}{ext}" for ext in (".npz", ".npy")]
            path = next((c for c in cands if c.is_file()), None)
            if path is None:
                raise MomentLensError(f"no feature file for video {vid!r} in {features_dir} (expected {stem}.npy or .npz).")
            feats, times = load_feature_file(path, fps)
            if feats.shape[1] != encoder.dim:
                raise MomentLensError(f"{path.name} holds {feats.shape[1]}-d features but the text encoder gives "
                                      f"{encoder.dim}-d ones; pick the encoder the features came from.")
        else:
            vf = encode_video(resolve_annotation_video(vid, video_dir), encoder, fps=fps)
            feats, times = vf.features, vf.times
        for q in qs:
            duration = float(q.duration or (times[-1] + 1.0 / fps))
            for window in q.windows[:1]:
                out.append(make_sample(feats, times, duration, text_of[id(q)], window, num_clips, vid, q.query))
        if progress is not None:
            progress((k + 1) / len(by_vid), f"features of {k + 1}/{len(by_vid)} videos")
    return out


def predict_windows(head: GroundingHead, sample: GroundingSample, top_k: int = 5, nms_threshold: float = 0.5) -> list[list[float]]:
    """Top-k [start, end, score] of one sample after NMS (evaluation of a trained head)."""

    scores = head.score_map(sample.clip_features, sample.text_feature)
    a, b = np.nonzero(np.isfinite(scores))
    cells = tm.cell_times(tm.clip_grid(sample.duration, head.num_clips))
    windows = cells[a, b]
    vals = scores[a, b]
    keep = nms(windows, vals, nms_threshold, top_k=top_k)
    return [[float(windows[i, 0]), float(windows[i, 1]), float(vals[i])] for i in keep]
