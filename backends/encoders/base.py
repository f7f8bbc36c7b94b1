"""The encoder interface every registered model implements, and the registry/factory over them."""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backends.core.device import MODEL_LOCK, resolve_device
from backends.core.errors import UnknownEncoderError

log = logging.getLogger(__name__)
TEXT_MEMO = 64  # encode_text calls remembered per encoder


@dataclass(frozen=True)
class EncoderSpec:
    """A registry entry: how to build one encoder family."""

    name: str  # registry name, e.g. "conse-effnet-minilm"; families end in ":" ("clip:")
    builder: Callable[..., Encoder]  # builder(device, arg) -> Encoder
    description: str  # one line for `momentlens encoders`
    available: Callable[[str | None], bool]  # are the weights on disk (no network)?
    family: bool = False  # takes an argument after the colon (a model name or a file path)
    models: Callable[[], list[str]] | None = None  # a family's named models (e.g. CLIP's), for listings
    test_only: bool = False  # random weights for tests: listed by `momentlens encoders`, kept out of the UIs


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(name: str, description: str, available: Callable[[str | None], bool] = lambda arg: True,
                     models: Callable[[], list[str]] | None = None,
                     test_only: bool = False) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    """Decorator adding a builder to the registry; a name ending in ':' is a family taking an argument
    (`models()` lists the names it knows, e.g. CLIP's model names)."""

    def wrap(builder: Callable[..., Encoder]):
        family = name.endswith(":")
        _REGISTRY[name] = EncoderSpec(name, builder, description, available, family, models, test_only)
        return builder

    return wrap


def list_encoders() -> list[str]:
    """Registered names (families shown with a placeholder argument)."""
    return [f"{n}<name-or-path>" if s.family else n for n, s in _REGISTRY.items()]


def registry() -> dict[str, EncoderSpec]:
    return dict(_REGISTRY)


def _lookup(name: str) -> tuple[EncoderSpec, str | None]:
    if name in _REGISTRY and not _REGISTRY[name].family:
        return _REGISTRY[name], None
    if ":" in name:
        prefix, arg = name.split(":", 1)
        spec = _REGISTRY.get(prefix + ":")
        if spec is not None and arg:
            return spec, arg
    raise UnknownEncoderError(f"unknown encoder {name!r}; available: {', '.join(list_encoders())}")


def canonical_encoder_name(name: str) -> str:
    """One spelling per encoder: a family's file argument becomes its resolved absolute path
    (`clip:/x/./y`, `clip:~/y` and a symlink all name the same model); other names are returned as they are."""
    spec, arg = _lookup(name)
    if not spec.family or arg is None:
        return spec.name
    path = Path(arg).expanduser()
    if path.exists():
        return f"{spec.name}{path.resolve()}"
    return f"{spec.name}{arg}"


def create_encoder(name: str | None = None, device: str | torch.device = "auto") -> Encoder:
    """Build an encoder by registry name (None = the default encoder) on `device` ("auto" = CUDA if present)."""
    if name is None:
        name = default_encoder_name()
    spec, arg = _lookup(name)
    dev = resolve_device(device)
    enc = spec.builder(dev, arg) if spec.family else spec.builder(dev)
    log.info("encoder %s on %s", enc.id, dev)
    return enc


def encoder_available(name: str) -> bool:
    """Whether `name` can be built offline (its weights are on disk)."""
    spec, arg = _lookup(name)
    return bool(spec.available(arg))


def offline_encoder_names(first: str | None = None, *, test_only: bool = False) -> list[str]:
    """Encoders that build without a download (CLIP models only when their weights are on disk); `first`
    (e.g. the current or default choice) leads the list. Random test encoders only with `test_only=True`."""
    names = []
    for name, spec in _REGISTRY.items():
        if spec.test_only and not test_only:
            continue
        if not spec.family:
            if spec.available(None):
                names.append(name)
        elif spec.models is not None:
            names += [f"{name}{m}" for m in spec.models() if spec.available(m)]
    if first:
        names = [first] + [n for n in names if n != first]
    return names


def default_encoder_name() -> str:
    """CLIP ViT-B/32 when its weights are already on disk, else the bundled offline encoder."""
    name = "clip:ViT-B/32" if encoder_available("clip:ViT-B/32") else "conse-effnet-minilm"
    log.info("default encoder: %s", name)
    return name


class Encoder(ABC):
    """Frames and texts to L2-normalised embeddings in one joint space.

    Subclasses set `name`, `id` (name + weights version, used in cache keys), `dim`, `visual_dim`,
    `input_size`, `device`, and implement the abstract methods. Everything returns float32 NumPy on CPU.
    """

    name: str
    id: str
    dim: int  # joint (text-frame) embedding size
    visual_dim: int  # raw visual feature size (for self-similarity views)
    input_size: int  # square input resolution after preprocessing
    input_fit: str = "crop"  # how a frame becomes the square input: "crop" (centre square) or "squash" (whole frame)
    device: torch.device
    batch_size: int = 32
    clip_len: int = 1  # frames per embedding: 1 for image encoders, n for video encoders (one clip of n frames)
    frame_rate: float = 0.0  # video encoders: frames per second inside a clip (0: embeds single frames)
    has_text: bool = True  # False: clips only, queried by a clip instead of a sentence

    # --- preprocessing ---------------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB (T,H,W,3) -> model input (T,3,S,S) on the encoder's device."""

    # --- differentiable parts (Grad-CAM) -----------------------------------------------------------
    @abstractmethod
    def image_model(self) -> torch.nn.Module:
        """A module mapping preprocessed frames to (unnormalised) joint embeddings, with autograd."""

    @abstractmethod
    def target_layer(self) -> torch.nn.Module:
        """The layer whose activations Grad-CAM weighs."""

    def reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Turns the target layer's output into (N, C, h, w); None when it already is."""
        return None

    # --- inference -------------------------------------------------------------------------------
    @abstractmethod
    def _embed_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed batch -> (joint embeddings, raw visual features), both (B, *)."""

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (Q, dim) joint embeddings (any norm)."""

    @torch.inference_mode()
    def encode_frames_both(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (T,H,W,3) -> (joint (T,dim) L2-normalised, visual (T,visual_dim)) float32."""
        joint, visual = [], []
        for i in range(0, len(frames), self.batch_size):
            batch = self.preprocess(frames[i : i + self.batch_size])
            with MODEL_LOCK:
                j, v = self._embed_batch(batch)
            joint.append(F.normalize(j.float(), dim=-1).cpu())
            visual.append(v.float().cpu())
        if not joint:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.visual_dim), np.float32)
        return torch.cat(joint).numpy(), torch.cat(visual).numpy()

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (T,H,W,3) -> (T, dim) float32, L2-normalised."""
        return self.encode_frames_both(frames)[0]

    def encode_visual(self, frames: np.ndarray) -> np.ndarray:
        """Raw visual features (T, visual_dim) for self-similarity views."""
        return self.encode_frames_both(frames)[1]

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """list of Q strings -> (Q, dim) float32, L2-normalised. The last TEXT_MEMO calls are remembered (a
        library search embeds its query once, not once more per candidate video); a copy is returned."""
        if isinstance(texts, str):
            texts = [texts]
        key = tuple(texts)
        memo = self.__dict__.setdefault("_text_memo", OrderedDict())
        lock = self.__dict__.setdefault("_text_memo_lock", threading.Lock())
        with lock:
            hit = memo.get(key)
            if hit is not None:
                memo.move_to_end(key)
                return hit.copy()
        emb = self._embed_texts(list(texts))
        out = F.normalize(emb.float(), dim=-1).cpu().numpy()
        with lock:
            memo[key] = out
            while len(memo) > TEXT_MEMO:
                memo.popitem(last=False)
        return out.copy()

    def describe(self) -> dict:
        """Plain facts for the UIs: id, device, sizes."""
        return {
            "name": self.name,
            "id": self.id,
            "device": str(self.device),
            "dim": self.dim,
            "visual_dim": self.visual_dim,
            "input_size": self.input_size,
        }


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T,H,W,3) -> (T,size,size,3): shorter side to `size` (bicubic), then a centre crop."""

    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        r = cv2.resize(f, (nw, nh), interpolation=interp)
        y, x = (nh - size) // 2, (nw - size) // 2
        out[i] = r[y : y + size, x : x + size]
    return out


# The process-wide model cache (read-only encoders shared by every caller, the web app's workers included),
# keyed by the canonical name and the device, least recently used first, and bounded in count and in bytes of
# weights. `_MODEL_GUARD` guards the dicts only; each key has its own build lock, so that building one encoder
# (an adapter builds its base encoder through this cache) never waits on a lock it already holds.
MODEL_CACHE_MAX_MODELS = int(os.environ.get("MOMENTLENS_MODEL_CACHE_MODELS", "4"))
MODEL_CACHE_MAX_BYTES = int(float(os.environ.get("MOMENTLENS_MODEL_CACHE_GB", "4")) * 2**30)
_MODEL_CACHE: OrderedDict[tuple[str, str], Encoder] = OrderedDict()
_MODEL_BUILD_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_MODEL_GUARD = threading.Lock()


def encoder_nbytes(enc: Encoder) -> int:
    """Bytes of the tensors an encoder holds (parameters and buffers of its modules, and plain tensors)."""
    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()

    for value in vars(enc).values():
        if isinstance(value, torch.nn.Module):
            for tensor in (*value.parameters(), *value.buffers()):
                add(tensor)
        elif isinstance(value, torch.Tensor):
            add(value)
        elif isinstance(value, Encoder):  # an adapter's base encoder is counted under its own key
            continue
    return total


def _evict_locked(keep: tuple[str, str]) -> None:
    """Drop least recently used models beyond the count and memory bounds (never `keep`, the newest)."""
    def over() -> bool:
        size = sum(encoder_nbytes(e) for e in _MODEL_CACHE.values())
        return len(_MODEL_CACHE) > MODEL_CACHE_MAX_MODELS or size > MODEL_CACHE_MAX_BYTES

    while len(_MODEL_CACHE) > 1 and over():
        oldest = next(k for k in _MODEL_CACHE if k != keep)
        log.info("model cache: unloading %s", oldest[0])
        del _MODEL_CACHE[oldest]
        _MODEL_BUILD_LOCKS.pop(oldest, None)


def cached_encoder(name: str | None = None, device: str | torch.device = "auto") -> Encoder:
    """A shared, read-only encoder instance per (canonical name, device): models load once per process,
    and the least recently used ones are unloaded beyond MODEL_CACHE_MAX_MODELS / MODEL_CACHE_MAX_BYTES."""
    if name is None:
        name = default_encoder_name()
    key = (canonical_encoder_name(name), str(resolve_device(device)))
    with _MODEL_GUARD:
        enc = _MODEL_CACHE.get(key)
        if enc is not None:
            _MODEL_CACHE.move_to_end(key)
            return enc
        build_lock = _MODEL_BUILD_LOCKS.setdefault(key, threading.Lock())
    with build_lock:  # one build per key; other keys build in parallel
        with _MODEL_GUARD:
            enc = _MODEL_CACHE.get(key)
        if enc is None:
            enc = create_encoder(key[0], device)
            with _MODEL_GUARD:
                _MODEL_CACHE[key] = enc
                _evict_locked(keep=key)
    return enc


def cached_models() -> list[str]:
    """Canonical names of the encoders loaded now, least recently used first (for tests and `app` logs)."""
    with _MODEL_GUARD:
        return [name for name, _ in _MODEL_CACHE]
