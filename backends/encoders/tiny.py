"""`conse-tiny-random`: a small random CNN and a tiny hashed bag-of-words text tower, for fast tests.

Its embeddings mean nothing; it exercises every code path (batching, caching, Grad-CAM hooks)
in milliseconds and needs no weights.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn

from backends.encoders.base import Encoder, register_encoder, resize_center_crop

VOCAB_BUCKETS = 4096


class TinyCNN(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.proj = nn.Linear(48, dim)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pooled(x))


class TinyTextTower(nn.Module):
    """Words hashed into buckets (crc32, stable across runs), mean of their embeddings."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.emb = nn.EmbeddingBag(VOCAB_BUCKETS, dim, mode="mean")

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids: list[int] = []
        offsets: list[int] = []
        for t in texts:
            offsets.append(len(ids))
            words = t.lower().split() or [""]
            ids.extend(zlib.crc32(w.encode()) % VOCAB_BUCKETS for w in words)
        dev = self.emb.weight.device
        return self.emb(torch.tensor(ids, device=dev), torch.tensor(offsets, device=dev))


class TinyRandomEncoder(Encoder):
    name = "conse-tiny-random"
    input_size = 64

    def __init__(self, device: torch.device, seed: int = 0):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.cnn = TinyCNN().to(device).eval()
            self.text = TinyTextTower().to(device).eval()
        self.device = device
        self.dim = 32
        self.visual_dim = 48
        self.id = f"{self.name}@seed{seed}"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(resize_center_crop(np.asarray(frames), self.input_size)).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def image_model(self) -> torch.nn.Module:
        return self.cnn

    def target_layer(self) -> torch.nn.Module:
        return self.cnn.features[-1]

    def _embed_batch(self, batch: torch.Tensor):
        pooled = self.cnn.pooled(batch)
        return self.cnn.proj(pooled), pooled

    def _embed_texts(self, texts: list[str]):
        return self.text(texts)


@register_encoder("conse-tiny-random", "tiny random CNN + hashed bag-of-words text (tests only)", test_only=True)
def build_tiny(device: torch.device) -> TinyRandomEncoder:
    return TinyRandomEncoder(device)
