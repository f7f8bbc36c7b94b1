"""The temporal-scaling view: checkpoints in, per-layer scale statistics (and their figure) out.

>>> data, fig = scaling_view(["adapter.epoch0.pt", "adapter.pt"])
>>> data["checkpoints"][0]["layers"][0]["mean"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from backends.analysis.scaling import SCALE_NAME, read_scales, scales_json
from backends.core.errors import CheckpointError
from backends.figures.scaling import scaling_figure


def scaling_view(checkpoints: Sequence[Any] | Any, name_pattern: str = SCALE_NAME) -> tuple[dict[str, Any], Any]:
    """Read the scales of one or several checkpoints: (JSON-able data, plotly Figure)."""
    if isinstance(checkpoints, (str, Path, Mapping, torch.nn.Module)):
        checkpoints = [checkpoints]
    if not checkpoints:
        raise CheckpointError("give at least one checkpoint to read scale parameters from.")
    scales = [read_scales(c, name_pattern) for c in checkpoints]
    return scales_json(scales), scaling_figure(scales)
