"""What every command shares: the `--encoder` and sampling options, and the `--json` printer."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.analysis.cvrl import MAX_SEED
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
    try:  # access() says yes to root anywhere, and knows nothing of /proc or a full disk: a real file tells
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".momentlens-probe-"):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot write into {parent} ({err.strerror or type(err).__name__}); "
                                         "choose another place") from None


def output_file(text: str) -> Path:
    """argparse type of a file the command writes: not a folder, in a place that can be written (checked before
    the work starts, so that a long computation does not end in a write error)."""
    p = Path(text).expanduser()
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of a file to write")
    if text.endswith(("/", os.sep)):  # Path() drops the slash: "newdir/" would quietly become a file "newdir"
        raise argparse.ArgumentTypeError(f"{text} ends with a slash, so it names a folder; give the name of a file "
                                         f"to write (for example {text.rstrip('/' + os.sep)}/model)")
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


def _run_manifest(out: Path, command: str) -> Path:
    return out / f".momentlens-{command}.json"


def earlier_run(out: Path, command: str) -> list[Path]:
    """The files that the last `command --out` run wrote into `out` (its manifest lists them) and that are still
    there. Only those are ever removed: a user's own file is never taken for one of ours, whatever its name."""
    try:
        names = json.loads(_run_manifest(out, command).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):  # none (a first run, or a folder of an older version), damaged
        return []
    if not isinstance(names, list):
        return []
    return sorted({out / n for n in names
                   if isinstance(n, str) and n == Path(n).name and not n.startswith(".") and (out / n).is_file()})


def write_run(out: Path, command: str, noun: str, write: Callable[[], list[Path]]) -> tuple[list[Path], str]:
    """Write one run's files into the folder `out` with `write()`: the files of the earlier `command` run there go
    first (so that the folder never mixes two runs), and a manifest lists the new ones for the next run. Returns the
    files written and the tail of the "wrote" line, which says what was replaced: the earlier run's files, and any
    other file that had the name of a new one (never silently)."""
    earlier = earlier_run(out, command)
    for old in earlier:
        old.unlink()
    there = {p.name for p in out.iterdir()} if out.is_dir() else set()
    try:
        written = write()
    except BaseException:  # Ctrl-C, a full disk: what this run left is listed, so the next run removes it
        left = sorted({p.name for p in out.iterdir()} - there) if out.is_dir() else []
        _record_run(out, command, [n for n in left if not n.startswith(".")])
        raise
    _record_run(out, command, [p.name for p in written])
    clobbered = sorted(p.name for p in written if p.name in there)
    said = [f"replacing the {len(earlier)} {noun} of an earlier run"] if earlier else []
    if clobbered:
        shown = ", ".join(clobbered[:3]) + (f" and {len(clobbered) - 3} more" if len(clobbered) > 3 else "")
        said.append(f"overwriting {len(clobbered)} other file(s) of the same name: {shown}")
    return written, f" ({'; '.join(said)})" if said else ""


def _record_run(out: Path, command: str, names: list[str]) -> None:
    with written_whole(_run_manifest(out, command)) as tmp:
        tmp.write_text(json.dumps({"command": command, "files": sorted(names)}), encoding="utf-8")


def say_written(line: str | None, as_json: bool) -> None:
    """A "wrote ..." line: on stdout, or with --json on stderr (stdout holds the JSON document alone), so that a
    replaced file is said in both modes."""
    if line:
        print(line, file=sys.stderr if as_json else sys.stdout)


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
