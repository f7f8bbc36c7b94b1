"""The `weights` sub-commands: `weights get NAME` fetches published weights (CLIP) into the cache."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="fetch better weights when the machine is online (CLIP, torchvision's video "
                       "models), or say how to place them by hand")
    p.set_defaults(func=lambda args: p.print_help() or 1)  # `momentlens weights` alone: its help, as `index` does
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    g = wsub.add_parser("get", help="download an encoder's published weights into the cache (SHA-256 checked)")
    g.add_argument("encoder", help="e.g. clip:ViT-B/32 or video:torchvision/r3d_18 (see `momentlens weights list`)")
    g.add_argument("--url", type=mirror_url, default=None, help="fetch from this mirror instead of the published URL")
    g.add_argument("--sha256", default=None, help="expected checksum, or its first 8+ hex digits (default: the "
                   "published one)")
    g.set_defaults(func=cmd_get)
    ls = wsub.add_parser("list", help="downloadable weights, where each goes, and whether it is there")
    ls.set_defaults(func=cmd_list)


def mirror_url(text: str) -> str:
    """argparse type of --url: an http(s) or file URL."""
    from urllib.parse import urlparse

    if urlparse(text).scheme not in ("http", "https", "file"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL; give one starting with https://, http:// or file://")
    return text


def cmd_get(args: argparse.Namespace) -> int:
    # deferred: these import torch and clip; `momentlens --help` must start in about 0.5 s
    from backends.encoders import default_encoder_name
    from backends.encoders.weights import get_weights

    def progress(frac: float, text: str) -> None:
        sys.stderr.write(f"\r{text} ({100 * frac:5.1f} %)   ")
        sys.stderr.flush()

    try:
        path = get_weights(args.encoder, url=args.url, sha256=args.sha256, progress=progress)
    finally:
        sys.stderr.write("\n")  # the progress line ends before any message (an error was glued to it)
    print(f"{args.encoder}: {path} (checksum verified); default encoder now {default_encoder_name()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from backends.encoders.weights import downloadable, weights_source

    names = downloadable()
    width = max(map(len, names))
    for name in names:
        src = weights_source(name)
        print(f"{'*' if src.target.is_file() else ' '} {name:{width}s}  {src.target}")
    print("(* on disk)")
    return 0
