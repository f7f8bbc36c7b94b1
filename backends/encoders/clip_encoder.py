"""OpenAI CLIP through the `clip` package: `clip:<model name or local file>` and `clip-tiny-random`."""

from __future__ import annotations

import functools
import os
import urllib.error
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from backends.core.errors import CheckpointError, WeightsNotFoundError
from backends.core.paths import package_literal
from backends.encoders.base import Encoder, register_encoder, resize_center_crop
from backends.io.checkpoints import file_version, is_torchscript_archive, read_checkpoint, read_torchscript_state_dict

if TYPE_CHECKING:
    from types import ModuleType

    from clip.model import CLIP

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_CACHE = Path(os.environ.get("CLIP_CACHE", Path.home() / ".cache" / "clip"))


def clip_package() -> ModuleType:
    """The `clip` package, imported when a CLIP model is built or fetched, not with this module: it imports
    torchvision (~2 s), which listing encoders, the bundled encoder and `--help` do not need."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # clip imports the deprecated pkg_resources
        import clip  # noqa: PLC0415
        import clip.model  # noqa: PLC0415
    return clip


@functools.cache  # the registry, `weights list` and every availability check ask; the source is parsed once
def clip_models() -> dict[str, str]:
    """The named CLIP models and their published URLs (`clip.clip._MODELS`), read from the package's source
    without importing it (see clip_package). Shared: do not modify."""
    models = package_literal("clip", "clip.py", "_MODELS")
    if isinstance(models, dict) and models:
        return models
    return dict(clip_package().clip._MODELS)  # the source moved: the slow, sure way


def clip_weights_file(name: str) -> Path | None:
    """Where `clip.load(name)` looks for a named model's file (None for unknown names)."""
    url = clip_models().get(name)
    return CLIP_CACHE / os.path.basename(url) if url else None


def clip_available(arg: str | None) -> bool:
    if not arg:
        return False
    local = clip_weights_file(arg)
    return (local is not None and local.is_file()) or Path(arg).expanduser().is_file()


class ClipEncoder(Encoder):
    """A CLIP model: frames through the image tower, queries through the text tower."""

    def __init__(self, model: CLIP, device: torch.device, name: str, version: str):
        self.model = model.eval()
        self.device = device
        self.name = name
        self.id = f"{name}@{version}"
        self.dtype = model.dtype  # the conv weights' dtype: fp16 on CUDA (clip.load), fp32 on CPU
        self.input_size = int(model.visual.input_resolution)
        self.dim = int(model.text_projection.shape[1])
        self.visual_dim = self.dim
        self.is_vit = hasattr(model.visual, "transformer")
        self._mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
        if device.type == "cpu" and not self.is_vit:
            self.model.visual.to(memory_format=torch.channels_last)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        # CLIP's transform: bicubic resize of the shorter side, centre crop, CLIP mean/std
        x = torch.from_numpy(resize_center_crop(np.asarray(frames), self.input_size)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        if self.device.type == "cpu" and not self.is_vit:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype)

    def image_model(self) -> torch.nn.Module:
        return _ImageTower(self.model)

    def target_layer(self) -> torch.nn.Module:
        if self.is_vit:
            return self.model.visual.transformer.resblocks[-1].ln_1
        return self.model.visual.layer4[-1]

    def reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if not self.is_vit:
            return None
        grid = self.input_size // self.model.visual.conv1.kernel_size[0]

        def seq_first_to_map(t: torch.Tensor) -> torch.Tensor:
            # CLIP ViT is sequence-first (L, N, D): to (N, L, D), drop the class token, to (N, D, h, w)
            t = t.permute(1, 0, 2)[:, 1:, :]
            return t.reshape(t.shape[0], grid, grid, t.shape[2]).permute(0, 3, 1, 2)

        return seq_first_to_map

    def _embed_batch(self, batch: torch.Tensor):
        emb = self.model.encode_image(batch)
        return emb, emb

    def _embed_texts(self, texts: list[str]):
        tokens = clip_package().tokenize(texts, truncate=True).to(self.device)
        return self.model.encode_text(tokens)


class _ImageTower(torch.nn.Module):
    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.encode_image(x)


def load_clip_file(path: str | os.PathLike, device: torch.device) -> CLIP:
    """A CLIP model from a local file: OpenAI's TorchScript archive or a plain state dict (`torch.save`).

    The weights are read as tensors only (`backends.io.checkpoints`: never `torch.load` without
    `weights_only`, which `clip.load` uses), and the architecture is inferred from them by
    `clip.model.build_model`. On CUDA the weights stay fp16, as `clip.load` keeps them; on CPU they become fp32.
    """
    p = Path(path).expanduser()
    state = read_torchscript_state_dict(p) if is_torchscript_archive(p) else read_checkpoint(p)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "visual.proj" not in state and "visual.attnpool.c_proj.weight" not in state:
        raise CheckpointError(f"{p.name} is not a CLIP checkpoint (no CLIP image tower in it); pass an OpenAI CLIP "
                              ".pt file or a state dict of clip.model.CLIP.")
    try:
        model = clip_package().model.build_model(state)
    except (KeyError, RuntimeError, ValueError, IndexError) as err:
        raise CheckpointError(f"{p.name} is not a complete CLIP checkpoint ({type(err).__name__}).") from None
    model = model.to(device)
    return model.float() if device.type == "cpu" else model


@register_encoder("clip:", "OpenAI CLIP by model name (weights in ~/.cache/clip) or local .pt file", clip_available,
                  models=lambda: list(clip_models()))
def build_clip(device: torch.device, arg: str) -> ClipEncoder:
    path = Path(arg).expanduser()
    if path.is_file():
        return ClipEncoder(load_clip_file(path, device), device, f"clip:{path.name}", file_version(path))
    if arg not in clip_models():
        raise WeightsNotFoundError(
            f"CLIP model {arg!r} is neither a known model name ({', '.join(clip_models())}) nor a file."
        )
    local = clip_weights_file(arg)
    assert local is not None  # `arg` is one of clip_models()
    if not local.is_file():
        try:  # clip's own downloader checks the SHA-256 that is part of the URL
            clip_package().clip._download(clip_models()[arg], str(CLIP_CACHE))
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            raise WeightsNotFoundError(
                f"CLIP {arg} weights are not in {CLIP_CACHE} and cannot be downloaded (offline?); "
                f"place {local.name} in {CLIP_CACHE} or pass clip:/path/to/{local.name}."
            ) from err
    return ClipEncoder(load_clip_file(local, device), device, f"clip:{arg}", local.name.split(".")[0])


def tiny_random_clip(seed: int = 0) -> CLIP:
    """A ~3 M-parameter CLIP with random weights, for tests (32-d embeddings, one 64-wide layer per tower, 32 x 32 input)."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = clip_package().model.CLIP(
            embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1,
        )
    return model.float()


@register_encoder("clip-tiny-random", "tiny random CLIP ViT (tests only; meaningless embeddings)", test_only=True)
def build_clip_tiny(device: torch.device) -> ClipEncoder:
    return ClipEncoder(tiny_random_clip().to(device), device, "clip-tiny-random", "seed0")
