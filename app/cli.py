"""`momentlens app`: serve the web app (also `python -m app`)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys

from backends.cli.common import add_encoder_arg, int_range
from backends.core.errors import MomentLensError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="open the web app (moment retrieval and every view) in the browser")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int_range(1, 65535), default=None, help="port (default: 7860 or the next free one)")
    p.add_argument("--share", action="store_true",
                   help="also create a public Gradio share link (needs internet; offline it warns and serves locally)")
    p.add_argument("--auth", default=None, metavar="USER:PASS", help="require this user name and password")
    add_encoder_arg(p)
    p.add_argument("--video", default=None, help="clip to preload (default: the sample clip)")
    p.add_argument("--concurrency", type=int_range(1, 64), default=1, help="model-heavy requests run at once (default 1)")
    p.add_argument("--library", default=None, metavar="DIR",
                   help="video library the Library tab searches (default on this machine only: $MOMENTLENS_LIBRARY; a "
                   "shared or exposed app searches a library only when this names one)")
    p.set_defaults(func=cmd_app)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """'user:pass' -> ('user', 'pass'); the password may contain ':'."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise MomentLensError("--auth must look like USER:PASS, both non-empty.")
    return user, password


def check_host(host: str) -> None:
    """Refuse an interface this machine cannot serve on, in one sentence, before the app is built (Gradio would
    retry it and print the same error over and over)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.bind(address)
    except (OSError, UnicodeError) as err:
        raise MomentLensError(f"cannot serve on --host {host} ({getattr(err, 'strerror', None) or err}); use 127.0.0.1 "
                              "(this machine only), 0.0.0.0 (every interface) or one of this machine's addresses.") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


M_ARENA_MAX = -8  # glibc mallopt parameter


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Gradio serves each request from a worker thread, and glibc gives threads malloc arenas of their own that
    it rarely returns: the server kept +370 MiB (+28%) after 200 requests of benchmarks/load.py, +63 MiB (+5%)
    with two arenas. Applies to arenas created from now on; a no-op where libc is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the user chose
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def launch_message(local_url: str | None, share_url: str | None, share_asked: bool) -> str:
    """What `momentlens app` prints once the server is up: where it serves, and how to get a public link."""
    lines = [f"* momentlens is running on {local_url} (Ctrl-C stops it)"]
    if share_url:
        lines.append(f"* public link: {share_url} (temporary; anyone with it can use the app)")
    elif share_asked:
        lines.append("* no public link could be created (it needs internet access); serving on this machine only")
    else:
        lines.append("* for a public link, restart with --share and --auth USER:PASS")
    return "\n".join(lines)


def check_library(folder: str) -> None:
    """`--library DIR` must name a library, or an empty folder to start one in (from the Library tab): a typo, or a
    video folder given by mistake, is one sentence at start-up, not an empty library made on the spot."""
    from backends.retrieval.library import existing_library  # deferred: see build_app

    existing_library(folder, empty_ok=True)  # the sentence: does not exist, is a file, or holds files but no library


def cmd_app(args: argparse.Namespace) -> int:
    from app import build_app  # deferred: Gradio takes seconds to import, and `momentlens --help` must not wait

    auth = parse_auth(args.auth)
    check_host(args.host)
    _limit_malloc_arenas()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests are not news
    local = args.host in ("127.0.0.1", "localhost") and not args.share  # only the machine's own user may download
    library = args.library
    if library is not None:
        check_library(library)
    if library is None and local:
        from backends.retrieval.library import library_dir  # deferred: see build_app

        library = library_dir()
    demo = build_app(encoder=args.encoder, video=args.video, gpu_concurrency=args.concurrency, local=local,
                     library=library)
    if args.host not in ("127.0.0.1", "localhost"):
        log.warning("serving on %s: anyone who can reach this machine can use the app%s", args.host,
                    "" if auth else " (add --auth USER:PASS)")
    if args.share and auth is None:
        log.warning("--share without --auth: anyone with the link can use the app and see the clips uploaded to it; "
                    "add --auth USER:PASS")
    # SIGTERM (a service manager, `kill`) stops the server like Ctrl-C does, so the work folder is removed
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # quiet: Gradio's own hint ("set `share=True` in `launch()`") speaks to a programmer; this says it in flags
        launch = {"server_name": args.host, "server_port": args.port, "auth": auth, "quiet": True,
                  "prevent_thread_lock": True}
        try:
            demo.launch(share=args.share, **launch)
        except Exception as err:  # e.g. no internet for the share tunnel: keep serving locally
            if not args.share:
                raise
            log.warning("could not create a share link (%s); serving locally only", err)
            demo.launch(share=False, **launch)
        print(launch_message(demo.local_url, demo.share_url, args.share), flush=True)
        demo.block_thread()  # until Ctrl-C or SIGTERM
    finally:
        demo.close()  # stops the server and removes the work folder (uploads, exports, served copies)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["app", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return args.func(args)
