"""`momentlens train MODEL`: one sub-command per trainable model (temporal adapter, 2D-TAN grounding head)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends.cli.common import add_encoder_arg, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    train_parser = sub.add_parser("train", help="train a model: `train adapter` (temporal adapter) or "
                                  "`train grounding` (2D-TAN head)")
    train_parser.set_defaults(func=lambda args: train_parser.print_help() or 1)
    train = train_parser.add_subparsers(dest="what", metavar="MODEL")
    _register_adapter(train)
    _register_grounding(train)


def _register_adapter(train_sub: argparse._SubParsersAction) -> None:
    """Add `train adapter`."""
    p = train_sub.add_parser(
        "adapter",
        help="train a temporal adapter on a folder of videos (self-supervised, CVRL-style)",
        description="Frame features from the cache; two clips per video drawn with CVRL's temporal interval "
        "sampling; InfoNCE; writes CKPT, CKPT-stem.loss.json and .loss.png.",
    )
    p.add_argument("--videos", type=Path, required=True, metavar="DIR", help="folder of videos")
    add_encoder_arg(p)
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--steps", type=int, default=16, help="steps per epoch (default 16)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second of the features (default 1)")
    p.add_argument("--layers", type=int, default=4, help="temporal attention layers (default 4)")
    p.add_argument("--clip-frames", type=int, default=8, help="frames per training clip (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--save-initial", action="store_true",
                   help="also write the untrained adapter as CKPT-stem.epoch0.pt (to overlay in `scaling`)")
    p.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--json", action="store_true", help="print a JSON summary (checkpoint, loss curve, scales)")
    p.set_defaults(func=cmd_train_adapter)


def cmd_train_adapter(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    import torch

    from backends.encoders import cached_encoder
    from backends.models.adapter import AdapterConfig, TemporalAdapter, load_adapter, save_adapter
    from backends.train.adapter import TrainConfig, find_videos, loss_curve_paths, train_adapter_on_videos

    videos = find_videos(args.videos)
    encoder = cached_encoder(args.encoder)
    config = AdapterConfig(dim=encoder.dim, layers=args.layers)
    train = TrainConfig(steps_per_epoch=args.steps, clip_frames=args.clip_frames, lr=args.lr, seed=args.seed)
    ckpt = train_adapter_on_videos(videos, args.out, encoder=encoder, epochs=args.epochs, fps=args.fps,
                                   config=config, train=train, show_progress=None if not args.json else False)
    adapter, payload = load_adapter(ckpt)
    initial = None
    if args.save_initial:
        torch.manual_seed(args.seed)
        stem = ckpt.name[: -len(ckpt.suffix)] if ckpt.suffix else ckpt.name
        initial = save_adapter(TemporalAdapter(config), ckpt.with_name(f"{stem}.epoch0.pt"), payload["encoder"],
                               payload["encoder_id"])
    loss_json, loss_png = loss_curve_paths(ckpt)
    summary = {"checkpoint": str(ckpt), "encoder": payload["encoder_id"], "videos": payload["videos"],
               "loss_curve": [round(x, 5) for x in payload["loss_curve"]],
               "scales": {k: round(v, 6) for k, v in adapter.scales().items()},
               "loss_json": str(loss_json), "loss_png": str(loss_png),
               "initial": str(initial) if initial else None}
    if args.json:
        emit_json(summary)
        return 0
    curve = payload["loss_curve"]
    print(f"trained on {len(videos)} videos: loss {curve[0]:.3f} (untrained) -> {curve[-1]:.3f}; wrote {ckpt}")
    print("scales: " + ", ".join(f"{v:+.4f}" for v in adapter.scales().values()))
    print(f"loss curve: {loss_png}")
    return 0


def _register_grounding(train_sub: argparse._SubParsersAction) -> None:
    """Add `train grounding`."""
    p = train_sub.add_parser(
        "grounding", help="train a 2D-TAN grounding head on annotated videos or precomputed features",
        description="Same code path for videos (encoded through the cache) and precomputed features "
        "(--features-dir holding VID.npy (T x D at --fps) or VID.npz with features/times), with "
        "Charades-STA txt, QVHighlights jsonl, ActivityNet json or momentlens' simple JSON annotations.")
    p.add_argument("--annotations", required=True, type=Path, help="annotation file")
    p.add_argument("--video-dir", type=Path, default=None, help="folder of the annotated videos "
                   "(default: the annotation file's folder)")
    p.add_argument("--features-dir", type=Path, default=None, help="folder of precomputed features instead of videos")
    p.add_argument("--durations", type=Path, nargs="*", default=None,
                   help="Charades_v1_*.csv files with video durations (Charades-STA)")
    add_encoder_arg(p)
    p.add_argument("--fps", type=float, default=1.0, help="frame rate of the features (default 1)")
    p.add_argument("--num-clips", type=int, choices=(16, 32, 64, 128), default=16, help="map size N (default 16)")
    p.add_argument("--mask", choices=("dense", "sparse"), default="dense", help="valid cells (default dense)")
    p.add_argument("--hidden", type=int, default=64, help="channels of the map convolutions (default 64)")
    p.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.set_defaults(func=cmd_train_grounding)


def cmd_train_grounding(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.encoders import cached_encoder
    from backends.evaluation.annotations import load_annotations
    from backends.models import grounding as gm
    from backends.train import grounding as g

    queries = load_annotations(args.annotations, durations=args.durations or None)
    enc = cached_encoder(args.encoder)
    samples = g.samples_from_annotations(queries, enc, args.num_clips,
                                         video_dir=args.video_dir or args.annotations.resolve().parent,
                                         features_dir=args.features_dir, fps=args.fps)
    config = gm.GroundingConfig(feature_dim=enc.dim, hidden=args.hidden, num_clips=args.num_clips, mask=args.mask)
    settings = g.TrainSettings(epochs=args.epochs, lr=args.lr, seed=args.seed)
    head, log = g.train_head(samples, config, settings, show_progress=sys.stderr.isatty())
    out = g.save_head(head, args.out, enc.id, settings, log)
    print(f"trained on {len(samples)} query/video pairs, loss {log.losses[0]:.4f} -> {log.losses[-1]:.4f}; wrote {out}")
    return 0
