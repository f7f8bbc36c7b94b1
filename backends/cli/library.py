"""`momentlens index add|stats|remove|rebuild` and `momentlens search`: moment search over a video library."""

from __future__ import annotations

import argparse
from pathlib import Path

from backends.cli.common import add_encoder_arg, emit_json, positive_float


def _add_library_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", type=Path, default=None, metavar="DIR",
                   help="library folder (default $MOMENTLENS_LIBRARY, else ~/.cache/momentlens/library)")


def _existing_library(folder: Path | None):
    from backends.retrieval.library import existing_library

    return existing_library(folder)


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build a video library to search: `index add DIR`, `index stats`, "
                           "`index list`, `index remove FILE`, `index rebuild`")
    index.set_defaults(func=lambda args: index.print_help() or 1)
    what = index.add_subparsers(dest="what", metavar="ACTION")

    p = what.add_parser("add", help="encode and catalogue videos (folders searched recursively; unchanged files "
                        "are not encoded again; Ctrl-C keeps what was done)")
    p.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    add_encoder_arg(p)
    p.add_argument("--fps", type=positive_float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="encode on Ray: a local Ray without ADDRESS, else the cluster at ADDRESS (e.g. ray://head:10001 "
                   "or auto); needs pip install 'momentlens[ray]' and a feature cache every node can reach")
    _add_library_arg(p)
    p.add_argument("--json", action="store_true", help="print {added, unchanged, skipped, seconds} as JSON")
    p.set_defaults(func=cmd_index_add)

    p = what.add_parser("stats", help="what the library holds: videos, errors, clips, index kind and size")
    _add_library_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_index_stats)

    p = what.add_parser("list", help="the catalogued videos: path, duration, clips, status (and why, for errors)")
    _add_library_arg(p)
    p.add_argument("--json", action="store_true", help='print {"folder", "videos": [{"path", "duration", "clips", '
                   '"status", "reason"}]}')
    p.set_defaults(func=cmd_index_list)

    p = what.add_parser("remove", help="drop a video (or every video under a folder) from the library")
    p.add_argument("path", metavar="FILE_OR_FOLDER")
    _add_library_arg(p)
    p.set_defaults(func=cmd_index_remove)

    p = what.add_parser("rebuild", help="rebuild the clip index from the catalogue and the feature cache")
    _add_library_arg(p)
    p.set_defaults(func=cmd_index_rebuild)

    p = sub.add_parser("search", help="the best moments for a text query across the whole library")
    p.add_argument("query", help="the text query, in quotes")
    p.add_argument("--top-k", type=int, default=10, help="moments to return (default 10)")
    p.add_argument("--videos", type=int, default=10, help="candidate videos scored in the second stage (default 10)")
    _add_library_arg(p)
    p.add_argument("--json", action="store_true", help='print {"query", "encoder", "found", "results": [{"video", '
                   '"start", "end", "score", "confidence", "video_rank"}], "caveat" (when not found), "missing" (indexed '
                   'files gone from disk), "left_out": [{"video", "reason"}] (changed since indexed, or unreadable)}')
    p.set_defaults(func=cmd_search)


def cmd_index_add(args: argparse.Namespace) -> int:
    # deferred: torch and faiss; `momentlens --help` must start in about 0.5 s
    from backends.retrieval.library import Library

    lib = Library(args.library)
    report = lib.add(args.paths, encoder=args.encoder, fps=args.fps, show_progress=None if not args.json else False,
                     ray=args.ray)
    # nothing usable among the files given is a failure (exit 1), so that a script notices; the report still prints
    rc = 1 if report.skipped and not report.added and not report.unchanged else 0
    if args.json:
        emit_json(report.to_dict())
        return rc
    print(f"{len(report.added)} video(s) added, {len(report.unchanged)} unchanged, {len(report.skipped)} skipped "
          f"in {report.seconds:.1f} s; library {lib.folder} ({lib.encoder} at {lib.fps:g} fps)")
    if report.ray is not None:
        nodes = report.ray["nodes"]
        shown = ", ".join(nodes[:8]) + (f" and {len(nodes) - 8} more" if len(nodes) > 8 else "")
        print(f"  on Ray: {report.ray['encoded']} encoded, {report.ray['failed']} failed; decoded on -> encoded on "
              f"(host:Ray node): {shown or 'nothing to encode'}")
    for file, reason in report.skipped:
        print(f"  skipped {file}: {reason}")
    for file in report.dropped:
        print(f"  dropped {file}: gone from disk")
    if rc:
        print("none of the files given is a readable video: nothing was added (see the reasons above).")
    return rc


def cmd_index_stats(args: argparse.Namespace) -> int:
    stats = _existing_library(args.library).stats()
    if args.json:
        emit_json(stats)
        return 0
    if not stats["videos"] and not stats["errors"]:
        print(f"{stats['folder']}: empty; add videos with `momentlens index add FOLDER"
              f"{'' if args.library is None else ' --library ' + str(args.library)}`")
        return 0
    print(f"{stats['folder']}: {stats['videos']} videos ({stats['hours']:.2f} h), {stats['clips']} clips, "
          f"index {stats['index'] or 'none'} ({stats['index_bytes'] / 2**20:.1f} MiB"
          f"{'' if stats['index_current'] else ', stale: rebuilt on the next search'}); encoder {stats['encoder']} "
          f"at {stats['fps']:g} fps")
    for e in stats["errors"]:
        print(f"  error {e['file']}: {e['reason']}")
    return 0


def cmd_index_list(args: argparse.Namespace) -> int:
    lib = _existing_library(args.library)
    videos = [{k: v[k] for k in ("path", "duration", "clips", "status", "reason")} for v in lib.videos(None)]
    if args.json:
        emit_json({"folder": str(lib.folder), "videos": videos})
        return 0
    print(f"{lib.folder}: {len(videos)} catalogued video(s)")
    for v in videos:
        what = f"{v['duration']:8.1f} s {v['clips']:5d} clips" if v["status"] == "ok" else f"error: {v['reason']}"
        print(f"  {v['path']}  {what}")
    return 0


def cmd_index_remove(args: argparse.Namespace) -> int:
    n = _existing_library(args.library).remove(args.path)
    print(f"removed {args.path}" + (f" ({n} videos under it)" if n > 1 else ""))
    return 0


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    clips = _existing_library(args.library).rebuild()
    print(f"rebuilt the index: {clips} clips")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    result = _existing_library(args.library).search(args.query, top_k=args.top_k, videos=args.videos)
    if args.json:
        emit_json(result.to_dict())
        return 0
    print(f"{result.query!r} ({result.encoder}): {len(result.results)} moments from {len(result.candidates)} candidate videos")
    for note in result.notes():
        print(f"  {note}")
    width = max((len(Path(h.video).name) for h in result.results), default=0)  # names of any length line up
    for rank, h in enumerate(result.results, start=1):
        print(f"  #{rank:<2} {Path(h.video).name:<{width}}  {h.start:7.2f} - {h.end:7.2f} s   score {h.score:.3f}"
              f"   confidence {h.confidence:.2f}")
    return 0
