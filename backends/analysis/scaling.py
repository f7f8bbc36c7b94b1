"""Temporal-scaling curves (LiteVL): per-layer scale parameters read by name from any checkpoint.

LiteVL (Chen et al. EMNLP 2022) plots the layer-wise average of its learnable temporal scales. This module
finds such parameters in any state dict (ours: `layers.{i}.temporal_scale`; others: `blocks.{i}.ls1.gamma`,
`resblocks.{i}.alpha`, ...) by a name pattern inside layer-indexed keys, and summarises mean and mean |value|
per layer (docs/methods/litevl-scaling.md). The view is `backends.views.scaling`, the figure
`backends.figures.scaling`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from backends.core.errors import CheckpointError
from backends.io.checkpoints import read_checkpoint

# Last name component of a scale parameter: temporal_scale, scale, alpha, gamma, gamma_1, ls_scale, ...
SCALE_NAME = r"(?:\w+_)?(?:temporal_)?(?:scale|alpha|gamma)(?:_\d+)?"
# The patterns the web app offers by name (a remote caller never sends a regular expression).
SCALE_NAME_CHOICES = {
    "temporal_scale, scale, alpha or gamma": SCALE_NAME,
    "temporal_scale": r"temporal_scale",
    "scale": r"(?:\w+_)?scale(?:_\d+)?",
    "alpha": r"(?:\w+_)?alpha(?:_\d+)?",
    "gamma": r"(?:\w+_)?gamma(?:_\d+)?",
}
MAX_PATTERN_CHARS = 200
MAX_NAME_PART_CHARS = 128  # longer key components are no parameter names (and would make matching slow)


# Components that mark a normalisation layer, whose `gamma`/`scale` is a norm weight, not a residual scale.
NORM_COMPONENT = re.compile(r"(?:^|_)(?:norm|ln|bn|layernorm|batchnorm|layer_norm|batch_norm)(?:_?\d+)?$", re.I)


STATE_DICT_KEYS = ("state_dict", "model", "module", "model_state_dict", "net", "weights")


@dataclass
class ScaleParameter:
    """One scale parameter found in a checkpoint."""

    name: str  # full key in the state dict
    series: str  # key with the layer index replaced by {i}: the curve it belongs to
    layer: int  # layer index (depth)
    mean: float
    mean_abs: float
    numel: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "series": self.series, "layer": self.layer,
                "mean": self.mean, "mean_abs": self.mean_abs, "numel": self.numel}


def _as_state_dict(obj: Any, label: str) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{label} holds no state dict (no tensors under {', '.join(STATE_DICT_KEYS)} or at the top level).")


def load_state_dict(checkpoint: Any) -> tuple[Mapping[str, torch.Tensor], str]:
    """(state dict, label) from a path, a checkpoint dict, a state dict or a module."""
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if path.suffix.lower() == ".safetensors":  # tensors only (a `train cvrl` video encoder): no pickle to read
            try:
                return dict(load_safetensors(str(path))), path.name
            except (OSError, ValueError, RuntimeError, SafetensorError) as err:
                raise CheckpointError(f"{path.name} is not a readable safetensors file ({type(err).__name__}).") from err
        return _as_state_dict(read_checkpoint(path), path.name), path.name
    return _as_state_dict(checkpoint, "the checkpoint"), "checkpoint"


def compile_name_pattern(name_pattern: str) -> re.Pattern[str]:
    """The anchored, case-insensitive regex of a parameter-name pattern, or CheckpointError with one sentence."""
    if not isinstance(name_pattern, str) or not name_pattern or len(name_pattern) > MAX_PATTERN_CHARS:
        raise CheckpointError(f"the parameter-name pattern must be 1 to {MAX_PATTERN_CHARS} characters of a regular "
                              "expression, e.g. temporal_scale.")
    try:
        return re.compile(rf"^(?:{name_pattern})$", re.I)
    except re.error as err:
        raise CheckpointError(f"the parameter-name pattern is not a valid regular expression ({err.msg}); "
                              "e.g. temporal_scale or (alpha|gamma).") from None


def find_scale_parameters(state_dict: Mapping[str, torch.Tensor], name_pattern: str = SCALE_NAME) -> list[ScaleParameter]:
    """Scale parameters: keys whose last component matches `name_pattern` and that contain a layer index.

    The layer index is the last integer component before the name (`blocks.3.ls1.gamma` -> 3); keys under
    a normalisation layer (`norm1.gamma`, `bn.scale`) are skipped.
    """
    last = compile_name_pattern(name_pattern)
    found = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        parts = str(key).split(".")
        if any(len(p) > MAX_NAME_PART_CHARS for p in parts):
            continue
        if not last.match(parts[-1]) or any(NORM_COMPONENT.search(p) for p in parts[:-1]):
            continue
        index_pos = [i for i, p in enumerate(parts[:-1]) if p.isdigit()]
        if not index_pos:
            continue
        pos = index_pos[-1]
        series = ".".join(parts[:pos] + ["{i}"] + parts[pos + 1:])
        v = value.detach().float()
        found.append(ScaleParameter(key, series, int(parts[pos]), float(v.mean()), float(v.abs().mean()), v.numel()))
    found.sort(key=lambda s: (s.series, s.layer))
    return found


@dataclass
class CheckpointScales:
    label: str  # file name (or "checkpoint")
    parameters: list[ScaleParameter]

    def series(self) -> dict[str, list[ScaleParameter]]:
        out: dict[str, list[ScaleParameter]] = defaultdict(list)
        for p in self.parameters:
            out[p.series].append(p)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.label, "layers": [p.to_dict() for p in self.parameters]}


def read_scales(checkpoint: Any, name_pattern: str = SCALE_NAME) -> CheckpointScales:
    """Scale parameters of one checkpoint (path, dict, state dict or module); CheckpointError if there are none."""
    state, label = load_state_dict(checkpoint)
    params = find_scale_parameters(state, name_pattern)
    if not params:
        raise CheckpointError(f"{label} has no layer-indexed parameters named like {name_pattern!r} "
                              "(e.g. layers.3.temporal_scale).")
    return CheckpointScales(label, params)


def scales_json(scales: Sequence[CheckpointScales]) -> dict[str, Any]:
    """The one JSON shape of the scaling view, for one checkpoint or several:
    {"checkpoints": [{"checkpoint", "layers": [{"name", "layer", "mean", "mean_abs", ...}]}, ...]}."""
    return {"checkpoints": [s.to_dict() for s in scales]}


def scale_summary(scales: CheckpointScales) -> np.ndarray:
    """(layers,) mean |scale| per layer index over all series (a one-line summary for text output)."""
    by_layer: dict[int, list[float]] = defaultdict(list)
    for p in scales.parameters:
        by_layer[p.layer].append(p.mean_abs)
    return np.array([np.mean(by_layer[k]) for k in sorted(by_layer)])
