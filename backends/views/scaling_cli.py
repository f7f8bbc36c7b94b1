"""`momentlens scaling CKPT [CKPT ...]` and `momentlens train adapter --videos DIR --out CKPT`.

    momentlens train adapter --videos clips/ --encoder conse-effnet-minilm --epochs 10 --out adapter.pt --save-initial
    momentlens scaling adapter.epoch0.pt adapter.pt --html scaling.html
    momentlens scaling vit_checkpoint.pth --json
"""

from __future__ import annotations

from pathlib import Path

from backends.commands import add_encoder_arg


def register(sub) -> None:
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
                     help='print {"checkpoint", "layers": [{"name", "mean", "mean_abs", ...}]} '
                     '(several checkpoints: {"checkpoints": [...]})')
    out.add_argument("--html", type=Path, metavar="FILE", help="write a standalone (offline) plotly HTML")
    p.set_defaults(func=cmd_scaling)


def register_train(train_sub) -> None:
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


def cmd_scaling(args) -> int:
    from backends.cli import emit_json
    from backends.views.scaling import SCALE_NAME, scaling_view

    data, fig = scaling_view(args.checkpoints, args.pattern or SCALE_NAME)
    if args.json:
        emit_json(data)
        return 0
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(str(args.html), include_plotlyjs=True)
        print(f"wrote {args.html}")
        return 0
    for ck in data.get("checkpoints", [data]):
        print(ck["checkpoint"])
        for row in ck["layers"]:
            print(f"  {row['name']:<48} mean {row['mean']:+.5f}  mean|.| {row['mean_abs']:.5f}")
    return 0


def cmd_train_adapter(args) -> int:
    from backends.adapter import (
        AdapterConfig, TemporalAdapter, TrainConfig, find_videos, load_adapter, loss_curve_paths, save_adapter,
        train_adapter_on_videos,
    )
    from backends.cli import emit_json
    from backends.encoders import cached_encoder

    videos = find_videos(args.videos)
    encoder = cached_encoder(args.encoder)
    config = AdapterConfig(dim=encoder.dim, layers=args.layers)
    train = TrainConfig(steps_per_epoch=args.steps, clip_frames=args.clip_frames, lr=args.lr, seed=args.seed)
    ckpt = train_adapter_on_videos(videos, args.out, encoder=encoder, epochs=args.epochs, fps=args.fps,
                                   config=config, train=train, show_progress=None if not args.json else False)
    adapter, payload = load_adapter(ckpt)
    initial = None
    if args.save_initial:
        import torch

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
