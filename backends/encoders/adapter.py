"""The encoder family `adapter:<checkpoint>`: a trained temporal adapter over its base encoder.

Frames go through the base encoder (built through the shared model cache), then through the adapter with the
frames of one batch (`batch_size` consecutive frames in `encode_video`) as the temporal sequence. The adapter
module and its checkpoint format are in `backends.models.adapter`; its training in `backends.train.adapter`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.core.errors import CheckpointError
from backends.encoders.base import Encoder, cached_encoder, register_encoder
from backends.io.checkpoints import file_version
from backends.models.adapter import (
    CHECKPOINT_KIND,
    TemporalAdapter,
    load_adapter,
    read_checkpoint,
    video_text_scores,
)


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

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return self.base.preprocess(frames)

    def _embed_batch(self, batch: torch.Tensor):
        joint, visual = self.base._embed_batch(batch)
        adapted = self.adapter(F.normalize(joint.float(), dim=-1))
        return adapted, visual

    def _embed_texts(self, texts: list[str]):
        return self.base._embed_texts(texts)

    def adapt_features(self, features: np.ndarray) -> np.ndarray:
        """Base frame embeddings of a whole video (T, D) -> adapted (T, D), the whole video as one sequence."""
        with torch.inference_mode():
            return self.adapter(torch.as_tensor(np.asarray(features, np.float32), device=self.device)).cpu().numpy()

    def video_text_scores(self, features: np.ndarray, texts: list[str]) -> np.ndarray:
        """Text-dependent pooled video-text cosine scores (Q,) from base frame embeddings (T, D)."""
        return video_text_scores(self.adapter.cpu(), features, self.encode_text(texts))

    def image_model(self) -> torch.nn.Module:
        return _AdaptedImageModel(self.base.image_model(), self.adapter)

    def target_layer(self) -> torch.nn.Module:
        return self.base.target_layer()

    def reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self.base.reshape_transform()


class _AdaptedImageModel(nn.Module):
    def __init__(self, image_model: nn.Module, adapter: TemporalAdapter):
        super().__init__()
        self.image_model, self.adapter = image_model, adapter

    def forward(self, x: torch.Tensor):
        return self.adapter(F.normalize(self.image_model(x).float(), dim=-1))


def _adapter_available(arg: str | None) -> bool:
    return arg is not None and Path(arg).expanduser().is_file()


@register_encoder("adapter:", "temporal adapter checkpoint over its base encoder (train with `momentlens train "
                  "adapter` or in the app's Temporal scaling tab)", _adapter_available)
def build_adapter_encoder(device: torch.device, arg: str) -> AdapterEncoder:
    path = Path(arg).expanduser()
    ckpt_peek = read_checkpoint(path)
    if not isinstance(ckpt_peek, dict) or ckpt_peek.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path.name} is not a momentlens temporal-adapter checkpoint (train one with "
                              "`momentlens train adapter`).")
    base_name = ckpt_peek.get("encoder")
    if not isinstance(base_name, str) or not base_name or base_name.startswith("adapter:"):
        raise CheckpointError(f"{path.name} names no image encoder to adapt ({base_name!r}); train it again with "
                              "`momentlens train adapter --encoder NAME`.")
    base = cached_encoder(base_name, device)
    adapter, _ = load_adapter(path, expected_dim=base.dim)
    return AdapterEncoder(base, adapter, f"adapter:{path.name}", file_version(path))
