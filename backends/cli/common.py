"""What every command shares: the `--encoder` and sampling options, and the `--json` printer."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from backends.io.video import DEFAULT_MAX_DURATION


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """argparse type of rates and durations: a number above 0 (argparse prints the sentence and exits with 2)."""
    value = _number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """argparse type of thresholds such as an NMS IoU: a number from 0 to 1."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def add_encoder_arg(p: argparse.ArgumentParser) -> None:
    """The `--encoder` option shared by every command that embeds frames or text."""
    p.add_argument("--encoder", default=None, help="registry name (see `momentlens encoders`); default: "
                   "clip:ViT-B/32 if its weights are on disk, else conse-effnet-minilm")


def add_video_args(p: argparse.ArgumentParser) -> None:
    """Sampling options shared by every command that reads a video."""
    p.add_argument("--fps", type=positive_float, default=1.0, help="frames sampled per second (0.5, 1, 2, 4; default 1)")
    p.add_argument("--max-duration", type=positive_float, default=DEFAULT_MAX_DURATION,
                   help="refuse videos longer than this many seconds (default 7200)")
def emit_json(obj: Any) -> None:
    """Print a JSON document on stdout (the `--json` contract of every command)."""
    json.dump(obj, sys.stdout, indent=None, separators=(", ", ": "), allow_nan=False)
    sys.stdout.write("\n")
