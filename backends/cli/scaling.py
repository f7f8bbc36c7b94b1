"""`momentlens scaling CKPT [CKPT ...]` and `momentlens train adapter --videos DIR --out CKPT`.

    momentlens train adapter --videos clips/ --encoder conse-effnet-minilm --epochs 10 --out adapter.pt --save-initial
    momentlens scaling adapter.epoch0.pt adapter.pt --html scaling.html
    momentlens scaling vit_checkpoint.pth --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backends.cli.common import emit_json, output_file, write_html


def register(sub: argparse._SubParsersAction) -> None:
    """Add `scaling`."""
    p = sub.add_parser(
        "scaling",
        help="plot per-layer temporal scale parameters (LiteVL) read by name from checkpoints",
        description="Find layer-indexed scale parameters (temporal_scale, scale, alpha, gamma; norm weights "
        "excluded) in any checkpoint and plot their mean and mean |value| against depth.",
    )
    p.add_argument("checkpoints", nargs="+", type=Path, metavar="CKPT", help="checkpoint files (overlaid)")
    p.add_argument("--pattern", default=None, help="regex for the parameter's last name component "
                   "(default matches temporal_scale/scale/alpha/gamma)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help='print {"checkpoints": [{"checkpoint", "layers": [{"name", "mean", "mean_abs", ...}]}]}')
    out.add_argument("--html", type=output_file, metavar="FILE", help="write a standalone (offline) plotly HTML")
    p.set_defaults(func=cmd_scaling)


def cmd_scaling(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.analysis.scaling import SCALE_NAME
    from backends.views.scaling import scaling_view

    data, fig = scaling_view(args.checkpoints, args.pattern or SCALE_NAME)
    if args.json:
        emit_json(data)
        return 0
    if args.html:
        print(write_html(fig, args.html))
        return 0
    for ck in data["checkpoints"]:
        print(ck["checkpoint"])
        for row in ck["layers"]:
            print(f"  {row['name']:<48} mean {row['mean']:+.5f}  mean|.| {row['mean_abs']:.5f}")
    return 0
