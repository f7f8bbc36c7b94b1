"""The `retrieve`, `map2d` and `train grounding` sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from backends.cli.common import (
    add_encoder_arg,
    add_video_args,
    check_video_length,
    emit_json,
    output_file,
    unit_fraction,
    write_html,
)
from backends.retrieval.zero_shot import DEFAULT_SCORER, SCORER_NOTES


def add_scorer_arg(p: argparse.ArgumentParser) -> None:
    notes = "; ".join(f"{name}: {note}" for name, note in SCORER_NOTES.items())
    p.add_argument("--scorer", choices=tuple(SCORER_NOTES), default=None,
                   help=f"zero-shot scorer (default {DEFAULT_SCORER}; ignored with --head). {notes}")


def _add_query_args(p: argparse.ArgumentParser, clip_query: bool = False) -> None:
    """What `retrieve` and `map2d` both take: a video, a query, the encoder, sampling, a head or a scorer."""
    p.add_argument("video", help="video file (mp4, avi, webm, mov)")
    if clip_query:
        p.add_argument("query", nargs="?", default=None, help="the text query, in quotes (or query by clip, below)")
        p.add_argument("--query-clip", type=_window, default=None, metavar="START:END",
                       help="query by clip: the moments most like this moment of the video (seconds; the moment "
                       "itself is left out). Works with video encoders that have no text side")
        p.add_argument("--query-video", type=Path, default=None, metavar="FILE",
                       help="query by clip: the moments most like another video (video re-localisation)")
        p.add_argument("--query-window", type=_window, default=None, metavar="START:END",
                       help="with --query-video: the part of it to use (default the whole file)")
    else:
        p.add_argument("query", help="the text query, in quotes")
    add_encoder_arg(p)
    add_video_args(p)
    p.add_argument("--head", default=None, help="trained 2D-TAN grounding head checkpoint (default: zero-shot)")
    add_scorer_arg(p)


def _window(text: str) -> tuple[float, float]:
    """`START:END` in seconds (also `START-END` or `START,END`)."""
    for sep in (":", ",", "-"):
        if sep in text.strip().lstrip("-"):
            a, _, b = text.strip().partition(sep)
            try:
                return float(a), float(b)
            except ValueError:
                break
    raise argparse.ArgumentTypeError(f"{text!r} is not a window; write START:END in seconds, e.g. 12.5:18")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieve", help="find the moments of a video that match a text query or a clip")
    _add_query_args(p, clip_query=True)
    p.add_argument("--top-k", type=int, default=5, help="number of moments (default 5)")
    p.add_argument("--nms", type=unit_fraction, default=0.5, help="NMS IoU threshold (default 0.5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_retrieve)

    p = sub.add_parser("map2d", help="the 2D temporal map (2D-TAN) of a query: every candidate moment's score")
    _add_query_args(p)
    p.add_argument("--num-clips", type=int, choices=(16, 32, 64, 128), default=None,
                   help="map size N (default: from the duration)")
    p.add_argument("--mask", choices=("dense", "sparse"), default=None, help="valid cells (default: dense up to N=64)")
    p.add_argument("--top-k", type=int, default=5, help="moments marked on the map (default 5)")
    p.add_argument("--gt", type=float, nargs=2, metavar=("S", "E"), help="ground-truth window to mark (seconds)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print {num_clips, clip_times, scores} as JSON")
    out.add_argument("--html", type=output_file, help="write a standalone plotly heat map to this file")
    p.set_defaults(func=cmd_map2d)

    p = sub.add_parser("compare", help="two encoders side by side on one clip and query: both top-k lists and "
                       "their agreement (IoU of the top moments, saliency correlation)")
    p.add_argument("video", help="video file (mp4, avi, webm, mov)")
    p.add_argument("query", help="the text query, in quotes")
    p.add_argument("--encoders", nargs=2, required=True, metavar=("A", "B"),
                   help="the two encoders (registry names, adapter:CHECKPOINT, clip:FILE, ...)")
    add_video_args(p)
    p.add_argument("--top-k", type=int, default=5, help="moments per encoder (default 5)")
    p.add_argument("--nms", type=unit_fraction, default=0.5, help="NMS IoU threshold (default 0.5)")
    p.add_argument("--json", action="store_true", help="print JSON {video, query, encoders, a, b, agreement}")
    p.set_defaults(func=cmd_compare)


def cmd_retrieve(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.core.errors import QueryError
    from backends.encoders.video import NoTextSideError
    from backends.retrieval.engine import retrieve, retrieve_by_clip

    by_clip = args.query_clip is not None or args.query_video is not None
    if by_clip and args.query is not None:
        raise QueryError("give a text query or a query clip (--query-clip / --query-video), not both.")
    if args.query_clip is not None and args.query_video is not None:
        raise QueryError("give one query clip: --query-clip (a moment of this video) or --query-video (another file).")
    if args.query_window is not None and args.query_video is None:
        raise QueryError("--query-window picks a part of --query-video; for a moment of this video use --query-clip.")
    check_video_length(args)
    if by_clip:
        if args.head:
            raise QueryError("a grounding head scores text queries; drop --head to query by clip.")
        result = retrieve_by_clip(args.video, moment=args.query_clip, query_video=args.query_video,
                                  query_window=args.query_window, encoder=args.encoder, top_k=args.top_k,
                                  nms_threshold=args.nms, fps=args.fps, scorer=args.scorer)
    else:
        if args.query is None:
            raise QueryError("the query is missing: type one in quotes, or query by clip with --query-clip START:END.")
        try:
            result = retrieve(args.video, args.query, encoder=args.encoder, head=args.head, top_k=args.top_k,
                              nms_threshold=args.nms, fps=args.fps, progress=None, scorer=args.scorer)
        except NoTextSideError as err:
            raise QueryError(f"{err} Here: --query-clip START:END or --query-video FILE.") from None
    if args.json:
        emit_json(result.to_dict())
        return 0
    print(f"{Path(args.video).name} ({result.duration:.1f} s, {result.encoder}, {result.scorer}): {result.query!r}")
    if result.verdict():
        print(f"  {result.verdict()}")
    for rank, m in enumerate(result.moments, start=1):
        sure = "" if m.confidence is None else f"   confidence {m.confidence:.2f}"
        print(f"  #{rank}  {m.start:7.2f} - {m.end:7.2f} s   score {m.score:.3f}{sure}")
    for span in result.content_free():
        print(f"  no content {span['start']:.1f}-{span['end']:.1f} s ({span['reason']}): never a moment")
    return 0


def cmd_map2d(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.figures.retrieval import temporal_map_figure
    from backends.retrieval.engine import check_window, retrieve

    check_video_length(args)
    result = retrieve(args.video, args.query, encoder=args.encoder, head=args.head, top_k=args.top_k,
                      fps=args.fps, num_clips=args.num_clips, mask=args.mask or "auto", scorer=args.scorer)
    gt = check_window(args.gt, result.duration, "the ground truth --gt") if args.gt else None
    if args.json:
        emit_json(result.map.to_dict())
        return 0
    if args.html:
        fig = temporal_map_figure(result.map, result.moments, gt, title=f"2D temporal map: {result.query!r}")
        print(write_html(fig, args.html))
        return 0
    valid = int(result.map.mask.sum())
    ious = result.ious(gt)
    print(f"{result.map.num_clips} x {result.map.num_clips} map, {valid} valid cells; best moments"
          + (f" (IoU with the ground truth {gt[0]:g}-{gt[1]:g} s):" if gt else ":"))
    for rank, m in enumerate(result.moments, start=1):
        iou = f"   IoU {ious[rank - 1]:.2f}" if ious is not None else ""
        print(f"  #{rank}  {m.start:7.2f} - {m.end:7.2f} s   score {m.score:.3f}{iou}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.views.compare import compare_encoders

    check_video_length(args)
    cmp = compare_encoders(args.video, args.query, args.encoders, top_k=args.top_k, nms_threshold=args.nms, fps=args.fps)
    if args.json:
        emit_json(cmp.to_dict())
        return 0
    print(f"{Path(args.video).name} ({cmp.a.duration:.1f} s): {cmp.a.query!r}")
    for letter, r, best in (("A", cmp.a, cmp.best_iou_a), ("B", cmp.b, cmp.best_iou_b)):
        print(f"  {letter}: {r.encoder}")
        for rank, m in enumerate(r.moments, start=1):
            print(f"    #{rank}  {m.start:7.2f} - {m.end:7.2f} s   score {m.score:.3f}   best IoU with the other {best[rank - 1]:.2f}")
    print("  agreement: " + cmp.summary())
    return 0
