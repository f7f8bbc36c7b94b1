"""The `momentlens` command line (also `python -m backends`).

Each feature module contributes its sub-commands through a `register(subparsers)` function listed in
`COMMAND_MODULES`; a command's handler takes the parsed args and returns an exit code. User mistakes
raise `MomentLensError`, printed as one sentence on stderr (exit 2); `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

from backends.errors import MomentLensError

# Modules that add sub-commands; each defines register(subparsers). Missing ones are skipped only
# while the project is being built up, so keep this list to modules that exist.
COMMAND_MODULES = [
    "backends.commands",
    "backends.evaluation.cli",
    "backends.views.augment_cli",
    "backends.views.similarity_cli",
    "backends.retrieval.cli",
    "backends.views.gradcam_cli",
    "backends.views.scaling_cli",
    "app.cli",
]


def emit_json(obj: Any) -> None:
    """Print a JSON document on stdout (the `--json` contract of every command)."""
    json.dump(obj, sys.stdout, indent=None, separators=(", ", ": "), allow_nan=False)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momentlens",
        description="See what video encoders do: moment retrieval, temporal maps, self-similarity, Grad-CAM.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_parser = sub.add_parser("train", help="train a model: `train adapter` (temporal adapter) or "
                                  "`train grounding` (2D-TAN head)")
    train_parser.set_defaults(func=lambda args: train_parser.print_help() or 1)
    train = train_parser.add_subparsers(dest="what", metavar="MODEL")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_train"):  # modules that train a model add `train <model>`
            module.register_train(train)
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
