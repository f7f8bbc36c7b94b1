"""The encoder family `video:` -- 3D CNN video encoders: one embedding per clip of frames.

- `video:/path/NAME.safetensors`: a checkpoint trained by `momentlens train cvrl` (no text side: search it
  with a clip, `retrieve --query-clip`, or a moment of the video).
- `video:torchvision/r3d_18` (also `r2plus1d_18`, `mc3_18`, `s3d`): torchvision's Kinetics-400 weights when
  they are in torch's hub cache (nothing is downloaded); the text side is ConSE over the 400 Kinetics action
  names (as the bundled encoder does over ImageNet's), so "riding a bike" is a query.
- `video:tiny-random`, `video:torchvision/r3d_18-random`: random weights, for tests.

A clip is `clip_len` frames at `frame_rate` frames per second; `features.encode_video` embeds one clip
centred on each sampled instant, and Grad-CAM weighs the last 5-D activation map (time x height x width).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.core.device import MODEL_LOCK, inference_dtype
from backends.core.errors import CheckpointError, EncoderError, WeightsNotFoundError
from backends.core.paths import package_class_keyword
from backends.encoders.base import Encoder, register_encoder, resize_center_crop
from backends.encoders.conse import TOP_T, conse_mixture, label_embeddings, load_minilm
from backends.io.checkpoints import file_version, read_checkpoint
from backends.models.video import (
    KINETICS_MEAN,
    KINETICS_STD,
    VideoBackbone,
    VideoModelConfig,
    build_video_backbone,
    load_video_checkpoint,
)

TORCHVISION_ARCHS = ("r3d_18", "r2plus1d_18", "mc3_18", "s3d")
RANDOM_SUFFIX = "-random"


class NoTextSideError(EncoderError):
    """The encoder embeds clips only; text queries need an encoder with a text side."""


class VideoEncoder(Encoder):
    """A 3D CNN over clips of `clip_len` frames; the joint embedding is ConSE over its classifier's class
    names when it has one (a text side), else its pooled clip features (query by clip only)."""

    input_fit = "crop"

    def __init__(self, device: torch.device, backbone: VideoBackbone, model: VideoModelConfig, name: str, version: str,
                 *, class_names: list[str] | None = None, config: dict[str, Any] | None = None, batch_size: int = 8):
        self.device = device
        self.backbone = backbone.to(device).eval()
        self.model_config = model
        self.config = dict(config or {})  # the checkpoint's JSON config (augmentation, training args, ...)
        self.name = name
        self.clip_len = int(model.clip_len)
        self.frame_rate = float(model.frame_rate)
        self.input_size = int(model.input_size)
        self.visual_dim = int(backbone.feature_dim)
        self.batch_size = batch_size  # clips per forward pass
        self.autocast_dtype = inference_dtype(device)  # the project's precision policy (MOMENTLENS_PRECISION=fp32)
        self.mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1, 1)
        self.std = torch.tensor(model.std, device=device).view(1, 3, 1, 1, 1)
        self.class_names = class_names
        self.has_text = class_names is not None and backbone.classifier is not None
        if self.has_text:
            self.text_model = load_minilm(device)
            self.dim = self.text_model.get_embedding_dimension()
            self.label_embeddings = label_embeddings(class_names or [], self.text_model, self.dim).to(device)
        else:
            self.dim = self.visual_dim
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        self.id = f"{name}@{version}-n{self.clip_len}r{self.frame_rate:g}s{self.input_size}-{precision}"

    # --- preprocessing -------------------------------------------------------------------------------
    def preprocess_clips(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 RGB clips (B, n, H, W, 3) -> normalised (B, 3, n, S, S) on the device."""
        clips = np.asarray(clips)
        b, n = clips.shape[:2]
        square = resize_center_crop(clips.reshape(b * n, *clips.shape[2:]), self.input_size)
        x = torch.from_numpy(square).to(self.device).view(b, n, self.input_size, self.input_size, 3)
        x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)
        return (x - self.mean) / self.std

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB frames (T, H, W, 3), consecutive frames of one clip -> (1, 3, T, S, S)."""
        return self.preprocess_clips(np.asarray(frames)[None])

    # --- inference -----------------------------------------------------------------------------------
    def _joint(self, features: torch.Tensor) -> torch.Tensor:
        if not self.has_text:
            return features
        assert self.backbone.classifier is not None
        return conse_mixture(self.backbone.classifier(features), self.label_embeddings, TOP_T)

    def _embed_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                feats = self.backbone.features(batch)
            feats = feats.float()
        else:
            feats = self.backbone.features(batch)
        return self._joint(feats), feats

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        if not self.has_text:
            raise NoTextSideError(f"{self.name} embeds clips only and has no text side: query it with a clip (a moment "
                                  "of the video, or another video) instead of a sentence.")
        return self.text_model.encode(texts, batch_size=64)

    @torch.inference_mode()
    def encode_clips(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB clips (B, n, H, W, 3) -> (joint (B, dim) L2-normalised, visual (B, visual_dim)) float32."""
        joint, visual = [], []
        for i in range(0, len(clips), self.batch_size):
            batch = self.preprocess_clips(clips[i : i + self.batch_size])
            with MODEL_LOCK:
                j, v = self._embed_batch(batch)
            joint.append(F.normalize(j.float(), dim=-1).cpu())
            visual.append(v.float().cpu())
        if not joint:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.visual_dim), np.float32)
        return torch.cat(joint).numpy(), torch.cat(visual).numpy()

    def encode_frames_both(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Consecutive frames at `frame_rate` (T, H, W, 3) -> one embedding per frame: the clip of
        `clip_len` frames centred on it (edges repeat the first or last frame)."""
        frames = np.asarray(frames)
        idx = clip_windows(len(frames), np.arange(len(frames)), self.clip_len)
        return self.encode_clips(frames[idx]) if len(frames) else self.encode_clips(frames[None][:0])

    # --- Grad-CAM --------------------------------------------------------------------------------------
    def image_model(self) -> nn.Module:
        return _ClipModel(self)

    def target_layer(self) -> nn.Module:
        return self.backbone.target_layer()

    def describe(self) -> dict:
        return {**super().describe(), "clip_len": self.clip_len, "frame_rate": self.frame_rate,
                "arch": self.model_config.arch, "text_side": self.has_text}


class _ClipModel(nn.Module):
    """Clip (B,3,T,S,S) -> joint embedding, with autograd (what Grad-CAM differentiates)."""

    def __init__(self, enc: VideoEncoder):
        super().__init__()
        self.backbone = enc.backbone
        self.enc = enc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc._joint(self.backbone.features(x))


def clip_windows(num_frames: int, centres: np.ndarray, clip_len: int) -> np.ndarray:
    """(len(centres), clip_len) frame indices of the clips centred on `centres`, clamped to [0, num_frames)."""
    offsets = np.arange(clip_len) - clip_len // 2
    return np.clip(np.asarray(centres, int)[:, None] + offsets[None, :], 0, max(num_frames - 1, 0))


# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------
def _kinetics_weights(arch: str) -> Any:
    from torchvision.models import video as tv  # noqa: PLC0415 - deferred: only torchvision video encoders need the weights enums

    enum = {"r3d_18": tv.R3D_18_Weights, "r2plus1d_18": tv.R2Plus1D_18_Weights, "mc3_18": tv.MC3_18_Weights,
            "s3d": tv.S3D_Weights}[arch]
    return enum.KINETICS400_V1


_WEIGHTS_SOURCE = {"r3d_18": ("models/video/resnet.py", "R3D_18_Weights"),
                   "mc3_18": ("models/video/resnet.py", "MC3_18_Weights"),
                   "r2plus1d_18": ("models/video/resnet.py", "R2Plus1D_18_Weights"), "s3d": ("models/video/s3d.py", "S3D_Weights")}


def kinetics_weights_url(arch: str) -> str:
    """torchvision's published URL of `arch`'s Kinetics-400 weights (its file name carries a SHA-256 prefix), read
    from torchvision's source (`momentlens weights list` need not import it: ~2 s), else from the imported enum."""
    relative, cls = _WEIGHTS_SOURCE[arch]
    url = package_class_keyword("torchvision", relative, cls, "KINETICS400_V1", "url")
    return url if isinstance(url, str) and url.startswith("https://") else str(_kinetics_weights(arch).url)


def kinetics_weights_file(arch: str) -> Path:
    """Where torch's hub cache keeps `arch`'s Kinetics-400 weights (torchvision's own file name)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(kinetics_weights_url(arch)).name


def torchvision_model_config(arch: str) -> VideoModelConfig:
    """torchvision's Kinetics recipe: 16 frames at 15 fps, 112 px (s3d: 224 px), Kinetics mean/std."""
    size = 224 if arch == "s3d" else 112
    return VideoModelConfig(arch=arch, clip_len=16, frame_rate=15.0, input_size=size, mean=KINETICS_MEAN,
                            std=KINETICS_STD, num_classes=400)


def _build_torchvision(device: torch.device, arch: str, random: bool) -> VideoEncoder:
    cfg = torchvision_model_config(arch)
    weights = _kinetics_weights(arch)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_video_backbone(cfg)
    version = "random-seed0"
    if not random:
        path = kinetics_weights_file(arch)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"the Kinetics-400 weights of {arch} are not on this machine: run `momentlens weights get "
                f"video:torchvision/{arch}` (online), or download {weights.url} on a machine that is online and "
                f"copy it to {path}.")
        state = read_checkpoint(path)
        try:
            missing, unexpected = _load_torchvision_state(backbone, state if isinstance(state, dict) else {})
        except RuntimeError:  # tensors of other shapes
            missing, unexpected = ["(shapes differ)"], []
        if missing or unexpected:
            raise CheckpointError(f"{path.name} does not fit torchvision's {arch}: {len(missing)} weights missing, "
                                  f"{len(unexpected)} unexpected.")
        version = f"kinetics400-{file_version(path)}"
    name = f"video:torchvision/{arch}" + (RANDOM_SUFFIX if random else "")
    return VideoEncoder(device, backbone, cfg, name, version, class_names=list(weights.meta["categories"]), batch_size=4)


def _load_torchvision_state(backbone: VideoBackbone, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """torchvision's state dict (stem./layerN./fc. or features./classifier.) into the backbone's layout."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "stem":
            renamed[f"trunk.0.{rest}"] = value
        elif head.startswith("layer") and head[5:].isdigit():
            renamed[f"trunk.{int(head[5:])}.{rest}"] = value
        elif head == "features":
            renamed[f"trunk.{rest}"] = value
        elif head == "fc":
            renamed[f"classifier.{rest}"] = value
        elif head == "classifier":  # s3d: classifier.1 is the 1x1x1 convolution
            renamed[f"classifier.conv.{rest.partition('.')[2]}"] = value
        else:
            renamed[key] = value
    missing, unexpected = backbone.load_state_dict(renamed, strict=False)
    return list(missing), list(unexpected)


def _build_checkpoint(device: torch.device, path: Path) -> VideoEncoder:
    ckpt = load_video_checkpoint(path)
    return VideoEncoder(device, ckpt.backbone, ckpt.model, f"video:{path.name}", file_version(path), config=ckpt.config)


def _build_tiny_random(device: torch.device) -> VideoEncoder:
    cfg = VideoModelConfig()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_video_backbone(cfg)
    return VideoEncoder(device, backbone, cfg, "video:tiny-random", "seed0")


def _torchvision_builder(arch: str, random: bool) -> Callable[[torch.device], VideoEncoder]:
    return lambda device: _build_torchvision(device, arch, random)


_NAMED: dict[str, Callable[[torch.device], VideoEncoder]] = {"tiny-random": _build_tiny_random}
for _arch in TORCHVISION_ARCHS:
    _NAMED[f"torchvision/{_arch}"] = _torchvision_builder(_arch, random=False)
    _NAMED[f"torchvision/{_arch}{RANDOM_SUFFIX}"] = _torchvision_builder(_arch, random=True)


def _video_available(arg: str | None) -> bool:
    if arg is None:
        return False
    if arg.startswith("torchvision/") and not arg.endswith(RANDOM_SUFFIX):
        arch = arg.split("/", 1)[1]
        return arch in TORCHVISION_ARCHS and kinetics_weights_file(arch).is_file()
    if arg in _NAMED:
        return True
    return Path(arg).expanduser().is_file()


def _video_models() -> list[str]:
    """The named video encoders a listing offers (torchvision's, when their weights are on disk)."""
    return [f"torchvision/{a}" for a in TORCHVISION_ARCHS]


@register_encoder("video:", "3D CNN video encoder: a `momentlens train cvrl` checkpoint (.safetensors) or "
                  "torchvision/r3d_18|r2plus1d_18|mc3_18|s3d (Kinetics-400 weights from torch's hub cache, ConSE text)",
                  _video_available, models=_video_models)
def build_video_encoder(device: torch.device, arg: str) -> VideoEncoder:
    if arg in _NAMED:
        return _NAMED[arg](device)
    path = Path(arg).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(_NAMED))
        raise CheckpointError(f"video encoder {arg!r} is neither a checkpoint file nor one of: {known}.")
    return _build_checkpoint(device, path)
