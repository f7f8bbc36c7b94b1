"""Device choice, made once per process: "auto" means CUDA when present, else CPU."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def _auto() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return _auto()
    return torch.device(device)
