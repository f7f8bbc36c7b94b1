"""`momentlens tsm VIDEO`: the temporal self-similarity view (RepNet / cosine TSM, boundaries, events).

    momentlens tsm clip.mp4 --json
    momentlens tsm clip.mp4 --kind cosine --fps 2 --html tsm.html
    momentlens tsm clip.mp4 --encoder conse-tiny-random --boundaries events --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backends.analysis.similarity import (
    BOUNDARY_SOURCES,
    FEATURE_KINDS,
    KINDS,
    REPNET_TAU,
)
from backends.cli.common import (
    add_encoder_arg,
    emit_json,
    finite_float,
    float_range,
    int_range,
    output_file,
    positive_float,
    write_html,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `tsm` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser(
        "tsm",
        help="temporal self-similarity matrix of a video, with event boundaries and PSVL-style proposals",
        description="Embed sampled frames (cached), draw the RepNet or cosine self-similarity matrix, detect "
        "boundaries with a checkerboard novelty curve (Foote 2000) and cut the video into k-means events "
        "(PSVL-style); unions of consecutive events are the proposals.",
    )
    p.add_argument("video", type=Path, help="video file")
    p.add_argument("--kind", choices=KINDS, default="repnet", help="matrix to show (default repnet)")
    add_encoder_arg(p)
    p.add_argument("--fps", type=positive_float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--features", choices=FEATURE_KINDS, default="visual",
                   help="raw visual features (default) or the joint text-frame embedding")
    p.add_argument("--boundaries", choices=BOUNDARY_SOURCES, default="novelty",
                   help="report peaks of the novelty curve (default) or edges of the k-means events")
    p.add_argument("--kernel-seconds", type=positive_float, default=4.0, help="half-width of the novelty kernel (default 4 s)")
    p.add_argument("--threshold-std", type=finite_float, default=1.0,
                   help="a boundary peak must exceed mean + this many std of the curve (default 1)")
    p.add_argument("--min-distance", type=float_range(0.0), default=2.0, help="minimum seconds between boundaries (default 2)")
    p.add_argument("--events", type=int_range(1), default=None, metavar="K",
                   help="number of k-means clusters (default: chosen by silhouette)")
    p.add_argument("--tau", type=positive_float, default=REPNET_TAU, help=f"RepNet temperature (default {REPNET_TAU})")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the matrix, boundaries, events and proposals as JSON")
    out.add_argument("--html", type=output_file, metavar="FILE", help="write a standalone (offline) plotly HTML")
    p.set_defaults(func=run_tsm)


def run_tsm(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.analysis.similarity import SimilarityError
    from backends.views.similarity import self_similarity_view

    if not args.fps > 0:
        raise SimilarityError("--fps must be a positive number of frames per second.")
    result, fig = self_similarity_view(
        args.video, args.encoder, kind=args.kind, fps=args.fps, features=args.features, cache=not args.no_cache,
        kernel_seconds=args.kernel_seconds, threshold_std=args.threshold_std, min_distance=args.min_distance,
        tau=args.tau, n_events=args.events, boundaries_from=args.boundaries,
    )
    wrote = write_html(fig, args.html) if args.html else None
    if args.json:
        emit_json(result.to_dict())
        return 0
    print(f"{result.video}: {len(result.times)} frames ({result.encoder}, {result.features} features, "
          f"{result.fps:g} fps), {result.kind} TSM")
    print("boundaries (s): " + (", ".join(f"{b:.1f}" for b in result.boundaries) or "none"))
    print(f"{len(result.events)} events (k-means, k = {result.n_clusters}; a cluster that recurs apart in time is "
          "two events): " + ", ".join(f"[{s:.1f}, {e:.1f}]" for s, e in result.events))
    print(f"{len(result.proposals)} proposals (unions of consecutive events)")
    if wrote:
        print(wrote)
    return 0
