"""The `momentlens` command line (also `python -m backends`).

Each module of `backends.cli` adds its sub-commands through `register(subparsers)`; a command's handler
takes the parsed args and returns an exit code. Front ends add theirs through the `momentlens.commands`
entry-point group (the app registers `momentlens app`), so the backend never imports them. User mistakes
raise `MomentLensError`, printed as one sentence on stderr (exit 2); `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from backends.cli import (
    augment,
    core,
    evaluation,
    gradcam,
    library,
    retrieval,
    scaling,
    similarity,
    train,
    weights,
)
from backends.core.errors import MomentLensError

# The backend's command modules, in the order `momentlens --help` lists them.
COMMAND_MODULES = (core, evaluation, augment, similarity, retrieval, library, gradcam, scaling, train, weights)
ENTRY_POINT_GROUP = "momentlens.commands"  # `register(subparsers)` functions of installed front ends


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momentlens",
        description="See what video encoders do: moment retrieval, temporal maps, self-similarity, Grad-CAM.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except MomentLensError as err:
        if args.debug:
            raise
        print(f"momentlens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("momentlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went to a reader that stopped early (`| head`): not an error
        sys.stderr.close()
        return 0
    except OSError as err:  # a file the command had to read or write (a full disk, a read-only folder...)
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        reason = (err.strerror or str(err)).lower()
        print(f"momentlens: error: {where}{reason}; check the path, its permissions and the free space.",
              file=sys.stderr)
        return 2
