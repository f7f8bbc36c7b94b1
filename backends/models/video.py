"""3D CNN video encoders and their checkpoint format (safetensors weights + a JSON config).

A video encoder maps a clip (B, 3, T, S, S) to a 5-D activation map (B, C, T', h, w) (`VideoBackbone.trunk`,
the layer Grad-CAM weighs) and, pooled over time and space, to one feature vector per clip (B, C). The
architectures: `tiny3d` (a small residual 3D CNN that trains in minutes on a laptop CPU; it keeps the
temporal resolution, so per-frame features exist for CARL) and torchvision's Kinetics-400 models
(`r3d_18`, `r2plus1d_18`, `mc3_18`, `s3d`), whose classifier gives the ConSE text side.

A checkpoint written by `momentlens train cvrl` is `NAME.safetensors` (the weights, and the config again in
its metadata) plus `NAME.json` beside it (the config: architecture, clip length, frame rate, input size,
normalisation, augmentation, training arguments, code version). Loading reads tensors only: nothing is
unpickled, so a checkpoint can never run code. The encoder family `video:` (`backends.encoders.video`)
wraps these modules; training is in `backends.train.cvrl`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backends.core.errors import CheckpointError
from backends.io.atomic import written_whole
from backends.io.checkpoints import require_checkpoint_file

CHECKPOINT_KIND = "momentlens-video-encoder"
FORMAT_VERSION = 1
SAFETENSORS_SUFFIX = ".safetensors"

# torchvision's video classification recipe (Kinetics-400): mean/std of its VideoClassification transform
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass
class VideoModelConfig:
    """Architecture and input of a video encoder (saved in every checkpoint)."""

    arch: str = "tiny3d"  # tiny3d | r3d_18 | r2plus1d_18 | mc3_18 | s3d
    width: int = 16  # tiny3d: channels of the first stage (stages use 1x, 2x, 4x, 8x); torchvision: unused
    clip_len: int = 8  # frames per clip the model sees
    frame_rate: float = 8.0  # frames per second inside a clip (decode rate / temporal stride)
    input_size: int = 64  # square side of each frame after resize + centre crop
    mean: tuple[float, float, float] = KINETICS_MEAN  # per-channel normalisation of [0, 1] RGB
    std: tuple[float, float, float] = KINETICS_STD
    num_classes: int = 0  # classifier outputs (400 for torchvision's Kinetics weights); 0 = no classifier

    @property
    def clip_seconds(self) -> float:
        """Time one clip spans."""
        return self.clip_len / self.frame_rate

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoModelConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for k in ("mean", "std"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        cfg = cls(**kw)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise CheckpointError(f"unknown video architecture {self.arch!r}; known: {', '.join(ARCHITECTURES)}.")
        if self.clip_len < 1 or self.frame_rate <= 0 or self.input_size < 16 or self.width < 1:
            raise CheckpointError(f"video encoder config out of range: clip_len={self.clip_len}, "
                                  f"frame_rate={self.frame_rate}, input_size={self.input_size}, width={self.width}.")


class _Block3d(nn.Module):
    """Residual block of two 3x3x3 convolutions (the R3D basic block); `stride` on the first."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if cin != cout or stride != (1, 1, 1):
            self.skip = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.skip(x))


class Tiny3dTrunk(nn.Module):
    """A small R3D: stem (3x5x5, spatial stride 2) and four residual stages (spatial stride 2 from the
    second on); time is never downsampled, so the output keeps one step per input frame."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv3d(3, w, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                                  nn.BatchNorm3d(w), nn.ReLU(inplace=True))
        self.layer1 = _Block3d(w, w, (1, 1, 1))
        self.layer2 = _Block3d(w, 2 * w, (1, 2, 2))
        self.layer3 = _Block3d(2 * w, 4 * w, (1, 2, 2))
        self.layer4 = _Block3d(4 * w, 8 * w, (1, 2, 2))
        self.out_channels = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class VideoBackbone(nn.Module):
    """trunk: clip (B,3,T,S,S) -> activations (B,C,T',h,w); `features` pools them to (B,C); `classifier`
    (torchvision's Kinetics head, or None) maps features to class logits."""

    def __init__(self, trunk: nn.Module, feature_dim: int, target: Callable[[], nn.Module],
                 classifier: nn.Module | None = None):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.classifier = classifier
        self._target = target

    def target_layer(self) -> nn.Module:
        """The last 5-D activation map (Grad-CAM's layer)."""
        return self._target()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3, 4))

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,T,S,S) -> (B,T',C): activations pooled over space only (CARL's per-frame features)."""
        return self.trunk(x).mean(dim=(3, 4)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _tiny3d(cfg: VideoModelConfig) -> VideoBackbone:
    trunk = Tiny3dTrunk(cfg.width)
    classifier = nn.Linear(trunk.out_channels, cfg.num_classes) if cfg.num_classes else None
    # Grad-CAM's layer: layer3, an 8 x 8 map at 64 px (layer4's 4 x 4 is too coarse to read on a frame)
    return VideoBackbone(trunk, trunk.out_channels, lambda: trunk.layer3, classifier)


def _torchvision(arch: str) -> Callable[[VideoModelConfig], VideoBackbone]:
    def build(cfg: VideoModelConfig) -> VideoBackbone:
        from torchvision.models import video as tv  # noqa: PLC0415 - deferred: torchvision's model zoo is only needed for these architectures

        net = getattr(tv, arch)(weights=None, num_classes=cfg.num_classes or 400)
        if arch == "s3d":
            trunk: nn.Module = net.features
            last = net.features[-1]
            classifier = net.classifier[1] if cfg.num_classes else None  # a 1x1x1 Conv3d over the pooled map
            return VideoBackbone(trunk, 1024, lambda: last, _Conv1x1Head(classifier) if classifier is not None else None)
        trunk = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
        layer4 = net.layer4
        return VideoBackbone(trunk, net.fc.in_features, lambda: layer4, net.fc if cfg.num_classes else None)

    return build


class _Conv1x1Head(nn.Module):
    """S3D's classifier is a 1x1x1 convolution: applied to pooled features (B, C) as a linear map."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x[:, :, None, None, None]).flatten(1)


ARCHITECTURES: dict[str, Callable[[VideoModelConfig], VideoBackbone]] = {
    "tiny3d": _tiny3d,
    "r3d_18": _torchvision("r3d_18"),
    "r2plus1d_18": _torchvision("r2plus1d_18"),
    "mc3_18": _torchvision("mc3_18"),
    "s3d": _torchvision("s3d"),
}


def build_video_backbone(cfg: VideoModelConfig) -> VideoBackbone:
    """The module for `cfg` with random weights."""
    cfg.check()
    return ARCHITECTURES[cfg.arch](cfg)


# --------------------------------------------------------------------------------------------
# checkpoint format
# --------------------------------------------------------------------------------------------
@dataclass
class VideoCheckpoint:
    """A loaded video-encoder checkpoint: the module (eval mode, CPU) and its whole config."""

    backbone: VideoBackbone
    model: VideoModelConfig
    config: dict[str, Any] = field(default_factory=dict)  # the JSON config: model, augmentation, training, ...


def config_path(weights: str | os.PathLike) -> Path:
    """The JSON config beside a weights file: `NAME.safetensors` -> `NAME.json`."""
    return Path(weights).with_suffix(".json")


def save_video_checkpoint(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write `NAME.safetensors` (weights; the config in its metadata too) and `NAME.json`, each atomically.
    `config` must hold "model" (a VideoModelConfig dict); "kind" and "format_version" are added."""
    from safetensors.torch import save_file  # noqa: PLC0415 - deferred: only writers and loaders of video checkpoints need it

    out = Path(path)
    if out.suffix != SAFETENSORS_SUFFIX:
        out = out.with_suffix(SAFETENSORS_SUFFIX)
    full = {"kind": CHECKPOINT_KIND, "format_version": FORMAT_VERSION, **config}
    VideoModelConfig.from_dict(full["model"])  # refuse to write a config that would not load
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with written_whole(out) as tmp:
        save_file(tensors, str(tmp), metadata={"momentlens": text})
    with written_whole(config_path(out)) as tmp:
        tmp.write_text(text + "\n")
    return out


def read_video_config(path: str | os.PathLike) -> dict[str, Any]:
    """The config of a video checkpoint: the JSON beside it, else the copy in the safetensors metadata."""
    p = Path(path).expanduser()
    require_checkpoint_file(p, "video checkpoint")
    beside = config_path(p)
    text = None
    if beside.is_file() and beside != p:
        text = beside.read_text()
    else:
        try:
            from safetensors import safe_open  # noqa: PLC0415 - deferred: see save_video_checkpoint

            with safe_open(str(p), framework="pt") as f:
                text = (f.metadata() or {}).get("momentlens")
        except Exception as err:  # not a safetensors file
            raise CheckpointError(f"{p.name} is not a safetensors file ({type(err).__name__}); a momentlens video "
                                  "encoder is NAME.safetensors with NAME.json beside it.") from err
    if not text:
        raise CheckpointError(f"{p.name} carries no momentlens config and has no {beside.name} beside it.")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"the config of {p.name} is not valid JSON ({err.msg}).") from err
    if not isinstance(cfg, dict) or cfg.get("kind") != CHECKPOINT_KIND or not isinstance(cfg.get("model"), dict):
        raise CheckpointError(f"{p.name} is not a momentlens video-encoder checkpoint (train one with "
                              "`momentlens train cvrl`).")
    return cfg


def is_video_checkpoint(path: str | os.PathLike) -> bool:
    try:
        read_video_config(path)
    except CheckpointError:
        return False
    return True


def load_video_checkpoint(path: str | os.PathLike) -> VideoCheckpoint:
    """Build the architecture its config names and load the weights (tensors only); CheckpointError with one
    sentence when the file is not one, or its weights do not fit the architecture."""
    from safetensors.torch import load_file  # noqa: PLC0415 - deferred: see save_video_checkpoint

    p = Path(path).expanduser()
    cfg = read_video_config(p)
    model_cfg = VideoModelConfig.from_dict(cfg["model"])
    try:
        state = load_file(str(p), device="cpu")
    except Exception as err:
        raise CheckpointError(f"{p.name} is not a readable safetensors file ({type(err).__name__}).") from err
    backbone = build_video_backbone(model_cfg)
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensors of other shapes
        shapes = str(err).count("size mismatch")
        raise CheckpointError(f"{p.name} does not fit a {model_cfg.arch} encoder: {shapes} weights have other shapes; "
                              "was it written for another architecture or width?") from None
    if missing or unexpected:
        raise CheckpointError(f"{p.name} does not fit a {model_cfg.arch} encoder: {len(missing)} weights missing, "
                              f"{len(unexpected)} unexpected; was it written for another architecture?")
    return VideoCheckpoint(backbone.eval(), model_cfg, cfg)
