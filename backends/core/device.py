"""Device choice, made once per process: "auto" means CUDA when present, else CPU."""

from __future__ import annotations

import functools
import os
import threading

import torch

# One pass through an image/video model at a time in this process. Grad-CAM (analysis.gradcam.query_cam) hooks a
# model's layer for the length of its call, and any other pass through that layer meanwhile (another thread's
# encoding, another Grad-CAM: the widgets run panels on threads) landed in its lists: wrong shapes, bf16
# activations, errors. On CPU one pass already uses every core; encoders take it per batch, so long encodings
# still interleave.
MODEL_LOCK = threading.RLock()


@functools.cache
def _auto() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return _auto()
    return torch.device(device)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX): bf16 inference is then several
    times faster than fp32 for convolutional encoders."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def inference_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for CNN inference on `device` (None = plain fp32).

    CUDA: fp16. CPU: bf16 where the hardware has it, else fp32. `MOMENTLENS_PRECISION=fp32` forces fp32.
    """

    if os.environ.get("MOMENTLENS_PRECISION", "").lower() == "fp32":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None
