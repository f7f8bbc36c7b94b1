"""The trained 2D-TAN grounding head (Zhang et al., AAAI 2020): a conv stack over the 2D temporal map.

clip features (N, D) --1x1 conv--> (H, N) --max-pool over [a, b]--> map (H, N, N)
map --1x1 conv--> Hadamard product with the projected text feature --> L2-normalise over channels
--> 8 x [Conv2d k=5, ReLU, multiplied by the moment mask] --> 1x1 conv --> one logit per cell.
Loss: binary cross-entropy against the scaled IoU of each valid cell with the ground truth
(IoU <= t_min -> 0, IoU >= t_max -> 1, linear in between; Charades 0.5 / 1.0).

Training (`backends.train.grounding`) works from any frame features; docs/methods/2d-tan.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.analysis import temporal_map as tm
from backends.core.device import resolve_device
from backends.core.errors import CheckpointError
from backends.io.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


CHECKPOINT_KIND = "momentlens-grounding-head"




@dataclass
class GroundingConfig:
    """Architecture of the head (saved in the checkpoint)."""

    feature_dim: int  # size of the input clip features (the encoder's joint embedding)
    hidden: int = 64  # channels of the 2D map convolutions (64 trains in minutes on a 2-core CPU)
    num_clips: int = 16  # N of the N x N map (Charades 16)
    mask: str = "dense"  # "dense" (every cell up to N) or "sparse" (2D-TAN sampling)
    layers: int = 8  # masked Conv2d layers (2D-TAN: 8)
    kernel: int = 5  # their kernel size (2D-TAN: 5)
    t_min: float = 0.5  # scaled IoU: IoU at or below -> target 0
    t_max: float = 1.0  # scaled IoU: IoU at or above -> target 1


def window_max_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N) clip features -> (B, H, N, N) with cell [a, b] = max over clips a..b (0 below the diagonal)."""
    b, h, n = x.shape
    out = x.new_zeros(b, h, n, n)
    run = x  # run[..., a] = max of clips a .. a + k
    idx = torch.arange(n, device=x.device)
    for k in range(n):
        out[:, :, idx[: n - k], idx[k:]] = run[:, :, : n - k]
        if k + 1 < n:
            run = torch.maximum(run[:, :, : n - k - 1], x[:, :, k + 1 :])
    return out


class GroundingHead(nn.Module):
    """2D-TAN head: fused text/map features through masked convolutions to one score per moment."""

    def __init__(self, config: GroundingConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        self.clip_proj = nn.Conv1d(config.feature_dim, h, 1)
        self.map_proj = nn.Conv2d(h, h, 1)
        self.text_proj = nn.Linear(config.feature_dim, h)
        self.convs = nn.ModuleList(nn.Conv2d(h, h, config.kernel, padding=config.kernel // 2) for _ in range(config.layers))
        self.score = nn.Conv2d(h, 1, 1)
        self.mask: torch.Tensor  # the moment mask, a buffer (moves with the module)
        self.encoder_id: str | None = None  # set from the checkpoint by load_head
        mask = torch.from_numpy(tm.moment_mask(config.num_clips, config.mask).astype(np.float32))
        self.register_buffer("mask", mask, persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def num_clips(self) -> int:
        return self.config.num_clips

    def forward(self, clip_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """(B, N, D) clip features and (B, D) text features -> (B, N, N) logits (masked cells are meaningless)."""
        m = self.mask
        cells = window_max_pool(self.clip_proj(clip_features.transpose(1, 2))) * m  # 2D-TAN pooled map
        fused = F.normalize(self.text_proj(text_features)[:, :, None, None] * self.map_proj(cells), dim=1)
        x = fused
        for conv in self.convs:
            x = F.relu(conv(x)) * m  # masked after every layer
        return self.score(x).squeeze(1)

    @torch.inference_mode()
    def score_map(self, clip_features: np.ndarray, text_feature: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sigmoid scores (N, N) of one video/query, NaN on cells outside the mask."""
        self.eval()
        dev = self.mask.device
        x = torch.as_tensor(np.asarray(clip_features, np.float32), device=dev)[None]
        t = torch.as_tensor(np.asarray(text_feature, np.float32).reshape(-1), device=dev)[None]
        if x.shape[1] != self.num_clips:
            raise CheckpointError(
                f"this head scores maps of {self.num_clips} clips, not {x.shape[1]}; retrieve with --num-clips {self.num_clips}.")
        scores = torch.sigmoid(self(x, t))[0].float().cpu().numpy()
        valid = self.mask.cpu().numpy() > 0 if mask is None else np.asarray(mask, bool)
        return np.where(valid, scores, np.nan)


# --- checkpoints -----------------------------------------------------------------------------------
def load_head(path: str | os.PathLike, device: str | torch.device = "auto",
              expected_dim: int | None = None) -> GroundingHead:
    """Load a head saved by `save_head`; one clear sentence for a missing, foreign or mismatched file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"no such grounding-head checkpoint: {p}; train one with `momentlens train grounding`.")
    ckpt = read_checkpoint(p)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{p.name} is not a momentlens grounding-head checkpoint; "
                              "train one with `momentlens train grounding`.")
    config = GroundingConfig(**ckpt["config"])
    if expected_dim is not None and int(expected_dim) != config.feature_dim:
        raise CheckpointError(
            f"the head {p.name} was trained on {config.feature_dim}-d features ({ckpt.get('encoder_id')}) but this "
            f"encoder gives {expected_dim}-d ones; pick the encoder it was trained with.")
    head = GroundingHead(config)
    head.load_state_dict(ckpt["state_dict"])
    head.encoder_id = ckpt.get("encoder_id")
    return head.to(resolve_device(device)).eval()
