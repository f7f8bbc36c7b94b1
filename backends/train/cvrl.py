"""Self-supervised video encoder training: CVRL, with FAME and CARL as options (`momentlens train cvrl`).

- CVRL (Qian et al. 2021): two clips of one video, their starts `k` frames apart with k drawn from CVRL's
  decreasing density (`analysis.cvrl.sample_temporal_gap`), each augmented with one draw of crop, flip,
  colour jitter, grayscale, blur and solarize applied to all of its frames (`analysis.cvrl.apply_cvrl`: the
  code the Augmentations view shows); a projection head; InfoNCE over the global batch (negatives gathered
  from every process with gradients, `torch.distributed.nn.functional.all_gather`).
- FAME (Ding et al. 2022), `fame_p`: view 1's moving foreground pasted on another clip's background
  (`analysis.fame.fame`, the other clip being the next one of the batch).
- CARL (Chen et al. 2022), `carl_weight`: the frame-level sequence contrastive loss between the two clips'
  per-frame embeddings, with Gaussian targets over the frames' timestamp distance.

Data: a folder of videos (recursive), decoded clip by clip in DataLoader workers; files that cannot be read
are skipped with a warning and counted. Runs write `OUT.safetensors` + `OUT.json` (the encoder, loadable as
`video:OUT.safetensors`), `OUT.log.jsonl` (loss and learning rate per step) and `OUT.resume.pt` (model,
optimiser, schedule and position, tensors only) from which `resume=True` continues exactly where the run
stopped. Under `torchrun` the same function runs DistributedDataParallel (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from backends.analysis.cvrl import CvrlConfig, apply_cvrl, sample_cvrl_params, sample_temporal_gap
from backends.analysis.fame import fame
from backends.core.contracts import count
from backends.core.errors import CancelledError, MomentLensError, VideoError
from backends.io.atomic import refuse_to_replace
from backends.io.checkpoints import read_checkpoint, write_checkpoint
from backends.io.locks import exclusive_lock
from backends.io.video import list_videos, probe, read_frames
from backends.models.video import (
    VideoBackbone,
    VideoModelConfig,
    build_video_backbone,
    config_path,
    save_video_checkpoint,
)

log = logging.getLogger(__name__)

RESUME_KIND = "momentlens-cvrl-resume"


class TrainingError(MomentLensError):
    """Training cannot start or continue (no videos, a resume file of another run, ...)."""


@dataclass
class CvrlTrainConfig:
    """Everything that defines a CVRL run (saved in the checkpoint's JSON config)."""

    arch: str = "tiny3d"  # tiny3d | r3d_18 | r2plus1d_18 | mc3_18 | s3d (backends.models.video)
    width: int = 16  # tiny3d channels of the first stage
    clip_len: int = 8  # frames per clip (CVRL: 16)
    stride: int = 1  # decoded frames between a clip's frames (CVRL: 2)
    decode_fps: float = 8.0  # frames per second videos are decoded at (the clip's rate is decode_fps / stride)
    crop_size: int = 64  # side of the augmented frames (CVRL: 224)
    batch_size: int = 16  # clip pairs per step and process (the InfoNCE batch is batch_size x processes)
    temperature: float = 0.1  # InfoNCE temperature (CVRL: 0.1)
    proj_dim: int = 64  # projection head output (CVRL: 128)
    proj_hidden: int = 256  # projection head hidden width
    epochs: int = 1
    pairs_per_10s: float = 16.0  # clip pairs drawn per epoch from each video, per 10 s of it (at least 1 per video)
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of the steps with a linear warm-up, then cosine decay to 0
    fame_p: float = 0.0  # probability that view 1 gets FAME's foreground-background merge
    fame_beta: float = 0.5  # FAME's foreground share of the pixels
    carl_weight: float = 0.0  # weight of the CARL frame-level loss (0 = off)
    carl_temperature: float = 0.1  # CARL tau
    carl_sigma2: float = 10.0  # CARL sigma^2 of the Gaussian targets (in frames)
    seed: int = 0
    workers: int = 2  # DataLoader worker processes decoding clips
    save_every: int = 50  # steps between resume checkpoints (and at every epoch end)
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling)

    def cvrl(self) -> CvrlConfig:
        """The augmentation settings (what the Augmentations view shows for this model)."""
        return CvrlConfig(crop_size=self.crop_size, num_frames=self.clip_len, stride=self.stride)

    def model(self) -> VideoModelConfig:
        return VideoModelConfig(arch=self.arch, width=self.width, clip_len=self.clip_len,
                                frame_rate=self.decode_fps / self.stride, input_size=self.crop_size)

    def check(self) -> None:
        self.cvrl()
        self.model().check()
        if self.batch_size < 2:
            raise TrainingError("InfoNCE needs at least 2 clip pairs per batch: use --batch-size 2 or more.")
        if self.epochs < 1 or not self.pairs_per_10s > 0:
            raise TrainingError("--epochs must be at least 1 and --pairs-per-10s positive.")
        if not 0 <= self.fame_p <= 1 or not 0 < self.fame_beta < 1:
            raise TrainingError("--fame must be a probability in [0, 1] and FAME's beta in (0, 1).")
        if self.temperature <= 0 or self.carl_temperature <= 0 or self.carl_sigma2 <= 0:
            raise TrainingError("temperatures and CARL's sigma^2 must be positive.")


# The presets of `--config`: `tiny` trains in minutes on 2 CPU cores; `cvrl` is the paper's Kinetics recipe
# on torchvision's R3D-18 at 112 px (a GPU job).
PRESETS: dict[str, CvrlTrainConfig] = {
    "tiny": CvrlTrainConfig(),
    "cvrl": CvrlTrainConfig(arch="r3d_18", clip_len=16, stride=2, decode_fps=25.0, crop_size=112, batch_size=64,
                            proj_dim=128, proj_hidden=2048, epochs=100, pairs_per_10s=1.0, lr=1e-3, weight_decay=1e-6,
                            workers=8, save_every=500),
}


def preset(name: str, **overrides: Any) -> CvrlTrainConfig:
    """A preset with some fields replaced (None values keep the preset's)."""
    if name not in PRESETS:
        raise TrainingError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}.")
    cfg = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    cfg.check()
    return cfg


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass
class VideoEntry:
    path: str
    num_frames: int  # frames at decode_fps, from the container's duration (decoding may find fewer)
    duration: float = 0.0  # seconds, from the container


def scan_videos(folder: str | os.PathLike | Sequence[str | os.PathLike], decode_fps: float) -> tuple[list[VideoEntry], list[str]]:
    """The readable videos under `folder` (recursive) or of a list of files, and the names skipped with why."""
    if isinstance(folder, (str, os.PathLike)):
        try:
            paths = list_videos(folder, recursive=True)
        except VideoError as err:
            raise TrainingError(str(err)) from None
    else:
        paths = [Path(p) for p in folder]
    entries, skipped = [], []
    for p in paths:
        try:
            info = probe(p)
            if info.duration <= 0:
                raise VideoError(f"{p.name} has no duration")
            entries.append(VideoEntry(str(info.path), max(1, int(info.duration * decode_fps)), float(info.duration)))
        except (VideoError, OSError) as err:
            skipped.append(f"{p.name}: {err}")
            log.warning("skipping %s: %s", p.name, err)
    if len(entries) < 1:
        raise TrainingError(f"no readable video under {folder}; {count(len(skipped), 'file')} could not be read.")
    return entries, skipped


class CvrlPairs(Dataset):
    """Item i of epoch e: a CVRL clip pair from the video that item belongs to (each video owns
    max(1, round(pairs_per_10s * seconds / 10)) consecutive items), drawn with a generator seeded by
    (seed, e, i), so that every draw is the same whatever the worker, the process count or a resume."""

    def __init__(self, videos: list[VideoEntry], cfg: CvrlTrainConfig):
        self.videos = videos
        self.cfg = cfg
        self.aug = cfg.cvrl()
        self.epoch = 0
        self.short_side = int(round(cfg.crop_size * 1.15))  # decode just above the crop size
        counts = [max(1, int(round(cfg.pairs_per_10s * v.duration / 10.0))) for v in videos]
        self.first = np.concatenate([[0], np.cumsum(counts)])  # video k owns items first[k] .. first[k+1]-1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.first[-1])

    def video_of(self, index: int) -> int:
        return int(np.searchsorted(self.first, index, side="right") - 1)

    def _clip(self, entry: VideoEntry, start: int) -> np.ndarray:
        cfg = self.cfg
        span = (cfg.clip_len - 1) * cfg.stride + 1
        t0 = start / cfg.decode_fps
        frames, _ = read_frames(entry.path, fps=cfg.decode_fps, start=t0, end=t0 + (span + 0.5) / cfg.decode_fps,
                                size=self.short_side, max_frames=span)
        idx = np.minimum(np.arange(cfg.clip_len) * cfg.stride, len(frames) - 1)  # a clip past the real end repeats
        return frames[idx]

    def pair(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        entry = self.videos[self.video_of(index)]
        rng = np.random.default_rng([cfg.seed, self.epoch, index])
        temporal = sample_temporal_gap(rng, entry.num_frames, cfg.clip_len, cfg.stride, self.aug.gap_power)
        views, stamps = [], []
        for which in (0, 1):
            clip = self._clip(entry, temporal.starts[which])
            params = sample_cvrl_params(rng, clip.shape[1], clip.shape[2], which + 1, self.aug)
            views.append(apply_cvrl(clip, params))  # one draw for every frame of the clip (CVRL)
            stamps.append(temporal.starts[which] + cfg.stride * np.arange(cfg.clip_len))
        return {"v1": views[0], "v2": views[1], "t1": stamps[0], "t2": stamps[1], "index": index, "retries": 0}

    def __getitem__(self, index: int) -> dict[str, Any]:
        # A file that fails to decode is skipped for another video's pair (deterministically), so that every
        # batch stays full: all processes must gather equally many embeddings.
        k0, nv = self.video_of(index), len(self.videos)
        for attempt in range(min(nv, 50)):
            k = (k0 + attempt) % nv  # the same position in the next video's items
            i = int(self.first[k] + (index - self.first[k0]) % (self.first[k + 1] - self.first[k]))
            try:
                item = self.pair(i)
                item["retries"] = attempt
                return item
            except (VideoError, ValueError, OSError) as err:
                warnings.warn(f"skipping a clip of {Path(self.videos[k].path).name}: {err}", stacklevel=1)
        raise TrainingError("50 videos in a row could not be decoded; check the training folder.")


@dataclass
class CollateFame:
    """Stacks a batch and applies FAME to view 1 of a `p` share of it (background: the next clip's view 1)."""

    cfg: CvrlTrainConfig
    epoch: int = 0

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        v1 = np.stack([it["v1"] for it in items])
        v2 = np.stack([it["v2"] for it in items])
        fame_mask = np.zeros(len(items), bool)
        if self.cfg.fame_p > 0 and len(items) > 1:
            rng = np.random.default_rng([self.cfg.seed, self.epoch, int(items[0]["index"]), 7])
            fame_mask = rng.random(len(items)) < self.cfg.fame_p
            merged = v1.copy()
            for i in np.flatnonzero(fame_mask):
                merged[i] = fame(v1[i], v1[(i + 1) % len(items)], beta=self.cfg.fame_beta).merged
            v1 = merged
        return {
            "v1": torch.from_numpy(v1), "v2": torch.from_numpy(v2),
            "t1": torch.from_numpy(np.stack([it["t1"] for it in items]).astype(np.float32)),
            "t2": torch.from_numpy(np.stack([it["t2"] for it in items]).astype(np.float32)),
            "index": torch.tensor([int(it["index"]) for it in items]),
            "retries": int(sum(it["retries"] for it in items)),
            "fame": int(fame_mask.sum()),
        }


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the main process stops the run and shuts its workers down; a worker
    # that took it too would print its own KeyboardInterrupt traceback under the one-sentence message
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # workers decode and augment; the main process owns the cores for the model
    cv2.setNumThreads(1)


class _Skip(Sampler[int]):
    """The sampler's order of this epoch without its first `skip` indices (a resumed epoch)."""

    def __init__(self, base: Sampler[int], skip: int):
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def clip_loader(dataset: CvrlPairs, cfg: CvrlTrainConfig, sampler: Sampler[int] | None = None,
                collate: CollateFame | None = None, *, pin_memory: bool = False) -> DataLoader:
    """The DataLoader of training (and of benchmarks/train.py): `cfg.workers` processes decode and augment.
    Workers start from a fresh forkserver process (spawn off Linux), never by forking the caller: a process
    that already runs threads (a web server, decoder threads) can deadlock a forked child on a held lock."""
    context = ("forkserver" if sys.platform == "linux" else "spawn") if cfg.workers else None
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, shuffle=sampler is None, drop_last=True,
                      collate_fn=collate or CollateFame(cfg), num_workers=cfg.workers,
                      worker_init_fn=_worker_init if cfg.workers else None, multiprocessing_context=context,
                      prefetch_factor=4 if cfg.workers else None, pin_memory=pin_memory)


def to_model_input(u8: torch.Tensor, model: VideoModelConfig, device: torch.device) -> torch.Tensor:
    """uint8 clips (B, T, S, S, 3) -> normalised float (B, 3, T, S, S) on `device` (as the encoder feeds them)."""
    x = u8.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float().div_(255.0)
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------
# model and losses
# --------------------------------------------------------------------------------------------
def _mlp(cin: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class CvrlModel(nn.Module):
    """The encoder being trained plus CVRL's projection head and CARL's per-frame head."""

    def __init__(self, backbone: VideoBackbone, proj_hidden: int, proj_dim: int, carl: bool):
        super().__init__()
        self.backbone = backbone
        self.projection = _mlp(backbone.feature_dim, proj_hidden, proj_dim)
        self.frame_projection = _mlp(backbone.feature_dim, proj_hidden, proj_dim) if carl else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        maps = self.backbone.trunk(x)  # (B, C, T', h, w)
        z = self.projection(maps.mean(dim=(2, 3, 4)))
        frames = None
        if self.frame_projection is not None:
            per_frame = maps.mean(dim=(3, 4)).transpose(1, 2)  # (B, T', C)
            b, t, c = per_frame.shape
            frames = self.frame_projection(per_frame.reshape(b * t, c)).view(b, t, -1)
        return z, frames


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All processes' rows (rank order), gradients flowing back to each process's own rows; x itself alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # noqa: PLC0415 - deferred: only multi-process runs need it

    return torch.cat(all_gather(x), dim=0)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of the local pairs against the global batch: for local pair i (global row
    rank * B + i), the positive is the other view of the same clip pair, the negatives every other clip's
    view in the gathered batch (CVRL's loss, SimCLR's NT-Xent without same-view negatives)."""
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    labels = torch.arange(len(z1), device=z1.device) + rank * len(z1)
    loss_12 = F.cross_entropy(z1 @ all2.T / temperature, labels)
    loss_21 = F.cross_entropy(z2 @ all1.T / temperature, labels)
    return (loss_12 + loss_21) / 2


def carl_loss(f1: torch.Tensor, f2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, temperature: float = 0.1,
              sigma2: float = 10.0) -> torch.Tensor:
    """CARL sequence contrastive loss (Chen et al. 2022): l_ij = z_i . z_j / tau between the frames of two
    clips (B, T, D); targets p_ij = softmax_j(-d_ij^2 / (2 sigma^2)) with d_ij = |s_i * L_j / L_i - s_j| the
    timestamp distance (equal clip lengths here, so L_j / L_i = 1); KL(p_i || q_i), both directions."""
    z1, z2 = F.normalize(f1.float(), dim=-1), F.normalize(f2.float(), dim=-1)
    logits = torch.einsum("bid,bjd->bij", z1, z2) / temperature
    lengths = (s1.shape[1], s2.shape[1])
    d = (s1[:, :, None] * lengths[1] / lengths[0] - s2[:, None, :]).abs()
    target_12 = torch.softmax(-d.pow(2) / (2 * sigma2), dim=2)
    target_21 = torch.softmax(-d.transpose(1, 2).pow(2) / (2 * sigma2), dim=2)
    kl_12 = F.kl_div(torch.log_softmax(logits, dim=2), target_12, reduction="batchmean")
    kl_21 = F.kl_div(torch.log_softmax(logits.transpose(1, 2), dim=2), target_21, reduction="batchmean")
    return (kl_12 + kl_21) / 2 / logits.shape[1]  # per frame


def frame_stamps(stamps: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) frame timestamps -> (B, steps): the mean timestamp of each temporal cell of the activation map."""
    if stamps.shape[1] == steps:
        return stamps
    return F.adaptive_avg_pool1d(stamps[:, None, :], steps)[:, 0]


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over `warmup` of the steps, then cosine decay to 0."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
@dataclass
class TrainOutputs:
    """Where a run writes."""

    weights: Path  # OUT.safetensors (+ OUT.json beside it)
    log: Path  # OUT.log.jsonl
    resume: Path  # OUT.resume.pt

    @classmethod
    def for_out(cls, out: str | os.PathLike) -> TrainOutputs:
        p = Path(out).expanduser()
        stem = p.with_suffix("") if p.suffix in (".safetensors", ".pt", ".json") else p
        return cls(stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".log.jsonl"),
                   stem.with_name(stem.name + ".resume.pt"))

    @property
    def lock(self) -> Path:
        """The hidden lock file of the run writing these files."""
        return self.weights.with_name(f".{self.weights.name}.lock")

    def files(self) -> list[Path]:
        return [self.weights, config_path(self.weights), self.log, self.resume]


@dataclass
class TrainSummary:
    weights: Path
    steps: int  # optimiser steps done in total (this run and those it resumed)
    epochs_done: float
    losses: list[float]  # per step, this process's run only
    skipped_files: list[str]
    decode_retries: int
    world_size: int
    seconds: float
    clips_per_second: float
    stopped_early: bool
    extras: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # the trained CvrlModel (this process's copy), not serialised

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        d["weights"] = str(self.weights)
        return d


def code_version() -> str:
    """momentlens's version, and the git commit when the code runs from a checkout."""
    try:
        version = metadata.version("momentlens")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{version}+{rev}" if rev else version


def _distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def train_cvrl(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    cfg: CvrlTrainConfig | None = None,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    show_progress: bool | None = None,
    progress: Callable[[float, str], None] | None = None,
    device: torch.device | None = None,
    overwrite: bool = True,
) -> TrainSummary:
    """Train a video encoder with CVRL (+ FAME, CARL) on the videos of a folder; write OUT.safetensors,
    OUT.json, OUT.log.jsonl and OUT.resume.pt. `resume=True` continues from OUT.resume.pt (the same loss
    trajectory and the same final weights as a run that never stopped); `max_steps` stops after that many steps
    in total (resumable). `overwrite=False` refuses to start a new run over an earlier run's files (the CLI without
    --force). One run at a time writes to an OUT: a second one is refused while the first holds its lock."""
    cfg = cfg or CvrlTrainConfig()
    cfg.check()
    outputs = TrainOutputs.for_out(out)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes (and holds the lock)
        return _train_cvrl(videos, outputs, cfg, resume, max_steps, show_progress, progress, device)
    outputs.weights.parent.mkdir(parents=True, exist_ok=True)

    def busy() -> None:
        raise TrainingError(f"another training run is writing {outputs.weights.name} in {outputs.weights.parent}; "
                            "wait for it to finish, or choose another --out.")

    with exclusive_lock(outputs.lock, on_busy=busy):
        if not resume:  # checked under the lock: a run that just finished counts
            refuse_to_replace(outputs.files(), overwrite, error=TrainingError,
                              hint=" (or --resume to continue that run)" if outputs.resume.exists() else "")
        return _train_cvrl(videos, outputs, cfg, resume, max_steps, show_progress, progress, device)


def _train_cvrl(videos: str | os.PathLike | Sequence[str | os.PathLike], outputs: TrainOutputs,
                cfg: CvrlTrainConfig, resume: bool, max_steps: int | None, show_progress: bool | None,
                progress: Callable[[float, str], None] | None, device: torch.device | None) -> TrainSummary:
    rank, world, auto_device = _distributed()
    dev = device or auto_device
    entries, skipped = scan_videos(videos, cfg.decode_fps)
    dataset = CvrlPairs(entries, cfg)
    per_epoch = len(dataset) // (cfg.batch_size * world)
    if per_epoch < 1:
        raise TrainingError(f"{len(dataset)} clip pairs per epoch do not fill one batch of {cfg.batch_size} x {world} "
                            "processes: add videos, raise --pairs-per-10s or lower --batch-size.")
    total = per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model()
    model = CvrlModel(build_video_backbone(model_cfg), cfg.proj_hidden, cfg.proj_dim, cfg.carl_weight > 0).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, total, cfg.warmup))
    step = 0
    digest = videos_digest(entries)
    if resume:
        step = _load_resume(outputs.resume, cfg, model, optimiser, schedule, world, digest, len(entries))
    first_step = step
    net: nn.Module = model
    if world > 1:
        # DDP notes that the 1x1x1 skip convolutions' gradients have other (equivalent, size-1) strides than its
        # buckets: harmless, and printed on every rank
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_amp = cfg.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    show = (sys.stderr.isatty() if show_progress is None else show_progress) and rank == 0
    bar = tqdm(total=total, initial=step, unit="step", desc="train cvrl", disable=not show)
    losses: list[float] = []
    retries, seen_clips, stopped_early = 0, 0, False
    t_start = time.perf_counter()
    last_saved = step
    saved = False  # whether this run wrote the weights
    log_started = False  # the log is cut back to `first_step` when this run logs its first step, not before
    in_step, kept_buffers = False, {}
    try:
        while step < total:
            epoch, in_epoch = divmod(step, per_epoch)
            dataset.set_epoch(epoch)
            collate = CollateFame(cfg, epoch)
            base: Sampler[int]
            if world > 1:
                distributed: DistributedSampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                                 drop_last=True)
                distributed.set_epoch(epoch)
                base = distributed
            else:
                base = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            sampler = _Skip(base, in_epoch * cfg.batch_size)
            loader = clip_loader(dataset, cfg, sampler, collate, pin_memory=dev.type == "cuda")
            for batch in loader:
                if step >= total or (max_steps is not None and step >= max_steps):
                    break
                t0 = time.perf_counter()
                # a step's forward pass moves BatchNorm's running statistics: an interrupt before the step is done
                # puts them back, so the state saved is the last whole step's (a resumed run ends with the weights
                # of one that never stopped)
                kept_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
                in_step = True
                x1 = to_model_input(batch["v1"], model_cfg, dev)
                x2 = to_model_input(batch["v2"], model_cfg, dev)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    z, frames = net(torch.cat([x1, x2]))
                b = len(x1)
                nce = info_nce(z[:b], z[b:], cfg.temperature)
                carl = torch.zeros((), device=dev)
                if frames is not None:
                    steps_t = frames.shape[1]
                    carl = carl_loss(frames[:b], frames[b:], frame_stamps(batch["t1"].to(dev), steps_t),
                                     frame_stamps(batch["t2"].to(dev), steps_t), cfg.carl_temperature, cfg.carl_sigma2)
                loss = nce + cfg.carl_weight * carl
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                with _interrupt_deferred():  # the update and its log row happen whole, or not at all
                    scaler.step(optimiser)
                    scaler.update()
                    lr = optimiser.param_groups[0]["lr"]
                    schedule.step()
                    step += 1
                    in_step = False
                    retries += batch["retries"]
                    seen_clips += 2 * b * world
                    value = float(loss.detach())
                    losses.append(value)
                    if rank == 0:
                        if not log_started:
                            _trim_log(outputs.log, first_step)
                            log_started = True
                        _log_step(outputs.log, {"step": step, "epoch": epoch, "loss": round(value, 6),
                                                "infonce": round(float(nce.detach()), 6),
                                                "carl": round(float(carl.detach()), 6), "lr": lr,
                                                "fame": batch["fame"], "global_batch": b * world,
                                                "seconds": round(time.perf_counter() - t0, 4)})
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
                if progress is not None:
                    progress(step / total, f"step {step}/{total} · loss {value:.3f}")
                if step % cfg.save_every == 0 or step % per_epoch == 0:
                    _save(outputs, model, optimiser, schedule, cfg, step, per_epoch, world, entries, skipped, rank,
                          use_amp, digest)
                    last_saved, saved = step, True
            if max_steps is not None and step >= max_steps and step < total:
                stopped_early = True
                break
    except KeyboardInterrupt:
        stopped_early = True
        if in_step:  # interrupted inside a step: the statistics its forward pass moved go back
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    buf.copy_(kept_buffers[name])
        bar.close()
        if step > last_saved:
            _save(outputs, model, optimiser, schedule, cfg, step, per_epoch, world, entries, skipped, rank, use_amp,
                  digest)
        elif step == 0:
            raise CancelledError("training interrupted before its first step; nothing was saved"
                                 + (f" and the earlier run's files at {outputs.weights.name} are as they were"
                                    if outputs.weights.exists() else "") + ": start it again.") from None
        raise CancelledError(f"training interrupted at step {step} of {total}; continue it with --resume "
                             f"(the state is in {outputs.resume.name}).") from None
    bar.close()
    if step > last_saved or not outputs.weights.exists():
        _save(outputs, model, optimiser, schedule, cfg, step, per_epoch, world, entries, skipped, rank, use_amp,
              digest)
        saved = True
    seconds = time.perf_counter() - t_start
    return TrainSummary(outputs.weights, step, step / per_epoch, losses, skipped, retries, world, seconds,
                        seen_clips / max(seconds, 1e-9), stopped_early,
                        extras={"steps_per_epoch": per_epoch, "total_steps": total, "videos": len(entries),
                                "device": str(dev), "amp": str(amp_dtype).replace("torch.", "") if use_amp else "off",
                                "first_step": first_step, "saved": saved},
                        model=model)


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Ctrl-C during the block takes effect when it ends (in the main thread; elsewhere signals do not arrive)."""
    current = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if not (current is signal.default_int_handler or callable(current)):
        # not the main thread, or SIGINT ignored (a background job) or handled outside Python: left as it is
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def videos_digest(entries: Sequence[VideoEntry]) -> str:
    """What a run trains on, in the order its data is drawn (each video's file name and clip count): a resumed run
    must see the same videos (the folder itself may have moved)."""
    h = hashlib.sha1()
    for e in entries:
        h.update(f"{Path(e.path).name}|{e.num_frames}\n".encode())
    return h.hexdigest()[:16]


def saved_settings(out: str | os.PathLike) -> dict[str, Any]:
    """The settings an earlier run at `out` saved in its resume state ({} when there is none to read)."""
    path = TrainOutputs.for_out(out).resume
    if not path.is_file():
        return {}
    try:
        state = read_checkpoint(path, mmap=True)
    except MomentLensError:
        return {}
    return dict(state.get("config") or {}) if isinstance(state, dict) else {}


def _log_step(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _trim_log(path: Path, step: int) -> None:
    """Keep the log's rows up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(r + "\n" for r in rows))


def _save(outputs: TrainOutputs, model: CvrlModel, optimiser: torch.optim.Optimizer, schedule: Any,
          cfg: CvrlTrainConfig, step: int, per_epoch: int, world: int, entries: Sequence[VideoEntry],
          skipped: list[str], rank: int, amp: bool, digest: str) -> None:
    if rank != 0:
        return
    config = {
        "model": cfg.model().to_dict(),
        "augmentation": {"cvrl": _jsonable(asdict(cfg.cvrl())), "decode_fps": cfg.decode_fps,
                         "fame": {"p": cfg.fame_p, "beta": cfg.fame_beta}},
        "training": {**asdict(cfg), "amp": amp,  # what ran (asked for, it is used on CUDA only)
                     "objective": "cvrl" + ("+fame" if cfg.fame_p else "") + ("+carl" if cfg.carl_weight else ""),
                     "steps": step, "steps_per_epoch": per_epoch, "epochs_done": round(step / per_epoch, 4),
                     "world_size": world, "videos": len(entries), "skipped_files": len(skipped)},
        "code_version": code_version(),
    }
    save_video_checkpoint(outputs.weights, model.backbone.state_dict(), config)
    write_checkpoint({"kind": RESUME_KIND, "config": _jsonable(asdict(cfg)), "step": step, "world_size": world,
                      "videos": {"count": len(entries), "digest": digest},
                      "model": model.state_dict(), "optimizer": optimiser.state_dict(),
                      "schedule": schedule.state_dict()}, outputs.resume)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


def _load_resume(path: Path, cfg: CvrlTrainConfig, model: CvrlModel, optimiser: torch.optim.Optimizer, schedule: Any,
                 world: int, digest: str, n_videos: int) -> int:
    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist (start without --resume).")
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("kind") != RESUME_KIND:
        raise TrainingError(f"{path.name} is not a momentlens CVRL resume file.")
    saved = dict(state.get("config") or {})
    mine = _jsonable(asdict(cfg))
    differ = sorted(k for k in mine if k not in ("epochs", "workers", "save_every") and saved.get(k) != mine[k])
    if differ:
        raise TrainingError(f"{path.name} was written with other settings ({', '.join(differ)}); resume with the same "
                            "options, or start a new run with another --out.")
    videos = state.get("videos") or {}
    if videos.get("digest") not in (None, digest):  # (a state saved before this was recorded is not checked)
        raise TrainingError(f"{path.name} was trained on {count(int(videos.get('count') or 0), 'video')} and --videos now gives "
                            f"{count(n_videos, 'video')}, not the same ones; resume with the same --videos (the data order "
                            "depends on them), or start a new run with another --out.")
    if int(state.get("world_size", 1)) != world:
        raise TrainingError(f"{path.name} was written by {state.get('world_size')} processes; resume with the same "
                            "number (the data order depends on it).")
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"])

