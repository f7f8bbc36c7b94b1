"""What every command shares: the `--encoder` and sampling options, and the `--json` printer."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.analysis.cvrl import MAX_SEED
from backends.core.errors import MomentLensError
from backends.io import atomic
from backends.io.video import DEFAULT_MAX_DURATION, probe


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _ranged(convert: Callable[[str], Any], noun: str, low: float, high: float | None) -> Callable[[str], Any]:
    """argparse type: `convert(text)`, then refused outside [low, high] (high None: no upper bound)."""

    def parse(text: str) -> Any:
        value = convert(text)
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"must be a {noun} {span}, got {text}")
        return value

    parse.__name__ = noun  # what argparse names in its "invalid ... value" message
    return parse


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type of a whole number from `low` to `high` (inclusive; None: no upper bound)."""
    return _ranged(_integer, "whole number", low, high)


def float_range(low: float, high: float | None = None) -> Callable[[str], float]:
    """argparse type of a finite number from `low` to `high` (inclusive; None: no upper bound)."""
    return _ranged(_number, "number", low, high)


# argparse type of every --seed: the 32-bit seeds the backend takes (cvrl.MAX_SEED), refused outside in one sentence
seed_value = int_range(0, MAX_SEED)


def finite_float(text: str) -> float:
    """argparse type of any finite number (NaN and infinity refused)."""
    return _number(text)


def positive_float(text: str) -> float:
    """argparse type of rates and durations: a number above 0 (argparse prints the sentence and exits with 2)."""
    value = _number(text)
    if not value > 0:
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


def check_video_length(args: argparse.Namespace) -> None:
    """`--max-duration` for commands that encode through the retrieval engine: the video's length is read from
    its header (milliseconds) and refused in one sentence before any frame is decoded."""
    probe(args.video, max_duration=args.max_duration)


def emit_json(obj: Any) -> None:
    """Print a JSON document on stdout (the `--json` contract of every command)."""
    json.dump(obj, sys.stdout, indent=None, separators=(", ", ": "), allow_nan=False)
    sys.stdout.write("\n")


def _nearest_existing(p: Path) -> Path:
    """The closest folder above `p` that exists (or the root)."""
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _writable_place(p: Path) -> None:
    """Refuse, before any work, an output whose nearest existing folder is a file or cannot be written."""
    parent = _nearest_existing(p)
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{p} would be inside {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {parent} (no permission); choose another place")


def output_file(text: str) -> Path:
    """argparse type of a file the command writes: not a folder, in a place that can be written (checked before
    the work starts, so that a long computation does not end in a write error)."""
    p = Path(text).expanduser()
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of a file to write")
    _writable_place(p)
    return p


def output_dir(text: str) -> Path:
    """argparse type of a folder the command writes files into (created if missing)."""
    p = Path(text).expanduser()
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder to write into")
    if not p.exists():
        _writable_place(p)
    elif not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {p} (no permission); choose another place")
    return p


def add_force_arg(p: argparse.ArgumentParser) -> None:
    """`--force`: the only way a command replaces a model that an earlier run wrote."""
    p.add_argument("--force", action="store_true", help="replace the files of an earlier run at --out")


def refuse_to_replace(paths: list[Path], force: bool, hint: str = "") -> None:
    """A trained model is hours of work: a run never replaces one unless asked (--force)."""
    there = [p for p in paths if p.exists()]
    if there and not force:
        raise MomentLensError(f"{there[0]} already exists (from an earlier run); pass --force to replace it{hint}, "
                              "or choose another --out.")


def replaced(path: Path) -> str:
    """The tail of a "wrote FILE" line, computed before the write: an overwrite is said, never silent, and so is a
    folder that the write creates (a typo in a folder name would otherwise go unnoticed)."""
    if path.exists():
        return " (replacing the file that was there)"
    if path.parent.exists():
        return ""
    nearest, top = _nearest_existing(path), path.parent
    while top.parent != nearest:  # up to the outermost folder the write creates
        top = top.parent
    return f" (creating the folder {top})"


def clear_earlier_run(files: list[Path], noun: str) -> str:
    """Delete the files an earlier run left in an output folder (so that it never mixes two runs) and return the
    tail of the "wrote" line that says so ("" when there were none)."""
    for old in files:
        old.unlink()
    return f" (replacing the {len(files)} {noun} of an earlier run)" if files else ""


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """Write to the temporary name this yields; on success it becomes `path` in one step (a failed or interrupted
    write leaves the earlier file as it was). An error names `path`, not the temporary file."""
    try:
        with atomic.written_whole(path) as tmp:
            yield tmp
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def write_html(fig: Any, path: Path) -> str:
    """A figure as a standalone (offline) HTML file, written whole or not at all; returns the "wrote" line."""
    note = replaced(path)
    with written_whole(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return f"wrote {path}{note}"
