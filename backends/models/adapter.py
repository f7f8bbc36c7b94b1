"""The temporal adapter over any frame encoder (docs/methods/litevl-scaling.md) and its checkpoint format.

LiteVL dynamic temporal scaling (Chen et al. EMNLP 2022): L layers of temporal self-attention over the
frame embeddings (T, D) of an image encoder; layer i adds its output to the residual stream times a
learnable scale `layers.{i}.temporal_scale` initialised at 0, so the untrained adapter is the image
model. Video-text scores use LiteVL's text-dependent pooling (softmax over frames of token-text similarity).

A checkpoint loads as the encoder `adapter:<ckpt>` (`backends.encoders.adapter`); training is in
`backends.train.adapter`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.core.errors import CheckpointError
from backends.io.checkpoints import read_checkpoint, write_checkpoint

log = logging.getLogger(__name__)


CHECKPOINT_KIND = "momentlens-temporal-adapter"


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


class TemporalLayer(nn.Module):
    """Pre-norm temporal self-attention whose output enters the residual stream times `temporal_scale`."""

    def __init__(self, dim: int, heads: int, max_frames: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.position = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.temporal_scale: nn.Parameter = nn.Parameter(torch.zeros(1))  # LiteVL: starts at 0 = the image model

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
        self.layers: list[TemporalLayer] = nn.ModuleList(  # type: ignore[assignment]  # typed by its items
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
def save_adapter(adapter: TemporalAdapter, path: str | os.PathLike, encoder_name: str, encoder_id: str = "",
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
    return write_checkpoint(payload, path)


def load_adapter(path: str | os.PathLike, expected_dim: int | None = None) -> tuple[TemporalAdapter, dict]:
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
    state = ckpt["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{name} holds no adapter weights; train one with `momentlens train adapter`.")
    expected = adapter.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and getattr(state[k], "shape", None) != expected[k].shape]
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{name} does not match the adapter architecture in its own config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(reshaped)} reshaped weights); train it again.")
    adapter.load_state_dict(state)
    return adapter.eval(), ckpt
