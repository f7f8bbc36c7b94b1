"""`momentlens gradcam VIDEO "QUERY"`: query-conditioned Grad-CAM heat maps on frames of a video.

    momentlens gradcam clip.mp4 "a cardboard box" --frames 8 --html cam.html
    momentlens gradcam clip.mp4 "a dog" --method gradcam++ --out cam_png/ --json
    momentlens gradcam clip.mp4 "" --method eigencam --html preview.html     # query-free preview
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from backends.analysis.gradcam_options import FITS, METHODS
from backends.cli.common import (
    add_encoder_arg,
    emit_json,
    float_range,
    int_range,
    output_dir,
    output_file,
    say_written,
    unit_fraction,
    write_html,
    write_run,
)

if TYPE_CHECKING:
    from backends.analysis.gradcam import GradCamResult


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `gradcam` sub-command."""
    p = sub.add_parser(
        "gradcam",
        help="heat maps of where each frame matches a text query (Grad-CAM / Grad-CAM++ / EigenCAM)",
        description="Grad-CAM with the cosine similarity of frame and query embeddings as the target, "
        "on K frames spread over the video.",
    )
    p.add_argument("video", type=Path, help="video file")
    p.add_argument("query", help="text query (may be empty for --method eigencam)")
    add_encoder_arg(p)
    p.add_argument("--frames", type=int_range(1, 64), default=None,
                   help="frames spread evenly over the video (default 8; a video encoder looks at one clip of its own)")
    p.add_argument("--method", choices=METHODS, default="gradcam",
                   help="gradcam (default), gradcam++, or eigencam (cheap preview, ignores the query)")
    p.add_argument("--opacity", type=unit_fraction, default=0.5, help="heat map opacity over the frame, 0..1 (default 0.5)")
    p.add_argument("--fit", choices=FITS, default="squash",
                   help="squash: whole frame resized to the model input (default); crop: the encoder's centre crop")
    p.add_argument("--start", type=float_range(0.0), default=0.0, help="first second to sample from")
    p.add_argument("--end", type=float_range(0.0), default=None, help="last second to sample from (default: the end)")
    p.add_argument("--out", type=output_dir, metavar="DIR", help="write overlay PNGs and raw heat maps into DIR")
    p.add_argument("--html", type=output_file, metavar="FILE", help="write a standalone (offline) plotly HTML")
    p.add_argument("--json", action="store_true", help="print frame times and per-frame statistics as JSON")
    p.set_defaults(func=cmd_gradcam)


def cmd_gradcam(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.figures.gradcam import save_pngs
    from backends.views.gradcam import DEFAULT_FRAMES, gradcam_view

    frames = DEFAULT_FRAMES if args.frames is None else args.frames  # None: not given (see _ignored)
    result, fig = gradcam_view(args.video, args.query, encoder=args.encoder, frames=frames,
                               method=args.method, opacity=args.opacity, fit=args.fit,
                               start=args.start, end=args.end)
    written: list[Path] = []
    again = ""
    if args.out:  # the earlier run's PNGs there go first: the folder never mixes two runs
        written, again = write_run(args.out, "gradcam", "PNGs", lambda: save_pngs(result, args.out, args.opacity))
    wrote_html = write_html(fig, args.html) if args.html else None
    wrote_out = f"wrote {len(written)} PNGs into {args.out}{again}" if args.out else None
    notes = _ignored(result, args)
    if args.json:
        doc = result.to_dict()
        doc["out"] = str(args.out) if args.out else None
        doc["html"] = str(args.html) if args.html else None
        doc["notes"] = notes
        emit_json(doc)
    else:
        for line in notes:
            print(f"note: {line}")
        for row in result.summary():
            score = "" if row["score"] is None else f"  cos {row['score']:.3f}"
            print(f"{row['time']:8.2f} s{score}  peak at {row['peak_norm']}  mean heat {row['mean']:.3f}  "
                  f"hot area {row['hot_fraction']:.1%}")
    say_written(wrote_out, args.json)
    say_written(wrote_html, args.json)
    return 0


def _ignored(result: GradCamResult, args: argparse.Namespace) -> list[str]:
    """What of the command line the encoder could not use, said rather than dropped: a video encoder has no text
    side (the query) and looks at one clip of its own length (--frames)."""
    notes = [result.extras["blank"] + "."] if result.extras.get("blank") else []
    target = result.extras.get("target")
    if target and args.query.strip():
        notes.append(f"the query {args.query.strip()!r} is not used: {target}.")
    clip = result.extras.get("clip")
    if clip and args.frames is not None and args.frames != clip["frames"]:  # given, not the default
        notes.append(f"--frames {args.frames} is not used: {result.encoder_id} looks at one clip of {clip['frames']} "
                     f"frames at {clip['frame_rate']:g} fps.")
    return notes
