"""`momentlens train MODEL`: one sub-command per trainable model (temporal adapter, 2D-TAN grounding head)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends.cli.common import (
    add_encoder_arg,
    add_force_arg,
    emit_json,
    float_range,
    int_range,
    output_file,
    positive_float,
    seed_value,
    unit_fraction,
)
from backends.core.contracts import count
from backends.core.errors import MomentLensError
from backends.io.atomic import refuse_to_replace


def register(sub: argparse._SubParsersAction) -> None:
    train_parser = sub.add_parser("train", help="train a model: `train cvrl` (a self-supervised video encoder), "
                                  "`train adapter` (temporal adapter) or `train grounding` (2D-TAN head)")
    train_parser.set_defaults(func=lambda args: train_parser.print_help() or 1)
    train = train_parser.add_subparsers(dest="what", metavar="MODEL")
    _register_cvrl(train)
    _register_adapter(train)
    _register_grounding(train)


def _register_cvrl(train_sub: argparse._SubParsersAction) -> None:
    """Add `train cvrl`."""
    p = train_sub.add_parser(
        "cvrl",
        help="train a self-supervised 3D CNN video encoder (CVRL; FAME and CARL as options) on a folder of videos",
        description="CVRL: two clips per video (temporal interval sampling), temporally consistent augmentation, "
        "InfoNCE. Writes OUT.safetensors + OUT.json (use it as --encoder video:OUT.safetensors), OUT.log.jsonl "
        "(loss and learning rate per step) and OUT.resume.pt (--resume continues an interrupted run). Under "
        "torchrun (`torchrun --nproc-per-node N -m backends train cvrl ...`) it trains with "
        "DistributedDataParallel, negatives gathered from every process.",
    )
    p.add_argument("--videos", type=Path, required=True, metavar="DIR", help="folder of videos (searched recursively)")
    p.add_argument("--out", type=output_file, required=True, metavar="OUT", help="checkpoint to write (OUT.safetensors)")
    add_force_arg(p)
    p.add_argument("--config", default="tiny", help="preset: tiny (minutes on 2 CPU cores; default) or cvrl (the "
                   "paper's recipe on R3D-18, a GPU job)")
    p.add_argument("--arch", default=None, help="tiny3d | r3d_18 | r2plus1d_18 | mc3_18 | s3d (default: the preset's)")
    p.add_argument("--epochs", type=int_range(1), default=None, help="epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int_range(1), default=None, help="clip pairs per step and process")
    p.add_argument("--clip-len", type=int_range(1, 256), default=None, help="frames per clip")
    p.add_argument("--stride", type=int_range(1, 64), default=None, help="decoded frames between a clip's frames")
    p.add_argument("--decode-fps", type=positive_float, default=None, help="rate the videos are decoded at")
    p.add_argument("--crop-size", type=int_range(16, 1024), default=None, help="side of the augmented frames in pixels")
    p.add_argument("--temperature", type=positive_float, default=None, help="InfoNCE temperature (default 0.1)")
    p.add_argument("--pairs-per-10s", type=positive_float, default=None,
                   help="clip pairs drawn per epoch from each video, per 10 s of it (tiny: 16; at least 1 per video)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--fame", type=unit_fraction, default=None, metavar="P",
                   help="probability of FAME's foreground-background merge on view 1 (default 0 = off)")
    p.add_argument("--carl", type=float_range(0.0), default=None, metavar="WEIGHT",
                   help="weight of the CARL frame-level sequence contrastive loss (default 0 = off)")
    p.add_argument("--workers", type=int_range(0, 64), default=None, help="DataLoader worker processes decoding clips")
    p.add_argument("--seed", type=seed_value, default=None, help="random seed (default 0)")
    p.add_argument("--save-every", type=int_range(1), default=None, help="steps between resume checkpoints")
    p.add_argument("--max-steps", type=int_range(1), default=None, help="stop after this many steps in total (resumable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume.pt")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA too")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_train_cvrl)


def cmd_train_cvrl(args: argparse.Namespace) -> int:
    # deferred: torch and the training stack; `momentlens --help` must start in about 0.5 s
    import os

    from backends.train.cvrl import preset, saved_settings, train_cvrl

    epochs = args.epochs
    if args.resume and epochs is None:  # the run's own plan, not the preset's default
        epochs = saved_settings(args.out).get("epochs")
    # (an earlier run's files at --out are refused by train_cvrl, under the run's lock, unless --force or --resume)
    cfg = preset(args.config, arch=args.arch, epochs=epochs, batch_size=args.batch_size, clip_len=args.clip_len,
                 stride=args.stride, decode_fps=args.decode_fps, crop_size=args.crop_size, temperature=args.temperature,
                 pairs_per_10s=args.pairs_per_10s, lr=args.lr, fame_p=args.fame, carl_weight=args.carl,
                 workers=args.workers, seed=args.seed, save_every=args.save_every, amp=False if args.no_amp else None)
    summary = train_cvrl(args.videos, args.out, cfg, resume=args.resume, max_steps=args.max_steps,
                         show_progress=None if not args.json else False, overwrite=args.force)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # under torchrun: shut the process group down on every rank
        dist.barrier()  # (left to interpreter exit, gloo's threads can abort the process after a good run)
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        emit_json(summary.to_dict())
        return 0
    losses, extras = summary.losses, summary.extras
    use = f"(use --encoder video:{summary.weights})"
    if not losses:  # resumed at its last step, or stopped by --max-steps before one: nothing new was trained
        state = (f"stopped at step {summary.steps} of {extras['total_steps']} (--max-steps); continue with --resume "
                 "and a higher --max-steps" if summary.stopped_early else
                 f"the run is complete at step {summary.steps} of {extras['total_steps']} "
                 f"({summary.epochs_done:g} epochs); pass --epochs to train longer")
        print(f"nothing trained: {state}. {summary.weights} " + ("was written again" if extras["saved"] else
                                                                  "is as it was") + f" {use}")
    else:
        state = (f"stopped at step {summary.steps} (continue with --resume)" if summary.stopped_early else
                 f"{summary.steps} steps, {summary.epochs_done:g} epochs")
        resumed = f", resumed at step {extras['first_step']}" if extras["first_step"] else ""
        print(f"trained on {count(extras['videos'], 'video')} x {summary.world_size} process(es): {state}{resumed}, "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {summary.clips_per_second:.1f} clips/s; wrote "
              f"{summary.weights} {use}")
    if summary.skipped_files:
        print(f"skipped {count(len(summary.skipped_files), 'unreadable file')}: " + "; ".join(summary.skipped_files))
    return 0


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
    p.add_argument("--epochs", type=int_range(1, 10_000), default=10, help="epochs (default 10)")
    p.add_argument("--steps", type=int_range(1, 100_000), default=16, help="steps per epoch (default 16)")
    p.add_argument("--fps", type=positive_float, default=1.0, help="frames per second of the features (default 1)")
    p.add_argument("--layers", type=int_range(1, 24), default=4, help="temporal attention layers (default 4)")
    p.add_argument("--clip-frames", type=int_range(2, 64), default=8, help="frames per training clip (default 8)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed (default 0)")
    p.add_argument("--save-initial", action="store_true",
                   help="also write the untrained adapter as CKPT-stem.epoch0.pt (to overlay in `scaling`)")
    p.add_argument("--out", type=output_file, required=True, metavar="CKPT", help="checkpoint file to write")
    add_force_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary (checkpoint, loss curve, scales)")
    p.set_defaults(func=cmd_train_adapter)


def cmd_train_adapter(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    import torch

    from backends.encoders import cached_encoder
    from backends.models.adapter import AdapterConfig, TemporalAdapter, load_adapter, save_adapter
    from backends.train.adapter import TrainConfig, find_videos, loss_curve_paths, train_adapter_on_videos

    refuse_to_replace([args.out, *loss_curve_paths(args.out)], args.force)
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
    skipped = payload.get("skipped_files", [])
    summary = {"checkpoint": str(ckpt), "encoder": payload["encoder_id"], "videos": payload["videos"],
               "skipped_files": skipped,
               "loss_curve": [round(x, 5) for x in payload["loss_curve"]],
               "scales": {k: round(v, 6) for k, v in adapter.scales().items()},
               "loss_json": str(loss_json), "loss_png": str(loss_png),
               "initial": str(initial) if initial else None}
    if args.json:
        emit_json(summary)
        return 0
    curve = payload["loss_curve"]
    print(f"trained on {count(len(payload['videos']), 'video')} ({len(skipped)} skipped): loss {curve[0]:.3f} (untrained) -> "
          f"{curve[-1]:.3f}; wrote {ckpt}")
    for line in skipped:
        print(f"  skipped {line}")
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
    p.add_argument("--annotations", type=Path, default=None, help="annotation file (or --pseudo --videos DIR)")
    p.add_argument("--pseudo", action="store_true", help="PSVL pseudo-supervision: no annotations; events found "
                   "in the videos of --videos with pseudo-queries made from what the encoder recognises")
    p.add_argument("--videos", type=Path, nargs="+", default=None, help="with --pseudo: folders or files of "
                   "unlabeled videos")
    p.add_argument("--video-dir", type=Path, default=None, help="folder of the annotated videos "
                   "(default: the annotation file's folder)")
    p.add_argument("--features-dir", type=Path, default=None, help="folder of precomputed features instead of videos")
    p.add_argument("--durations", type=Path, nargs="*", default=None,
                   help="Charades_v1_*.csv files with video durations (Charades-STA)")
    add_encoder_arg(p)
    p.add_argument("--fps", type=positive_float, default=1.0, help="frame rate of the features (default 1)")
    p.add_argument("--num-clips", type=int, choices=(16, 32, 64, 128), default=16, help="map size N (default 16)")
    p.add_argument("--mask", choices=("dense", "sparse"), default="dense", help="valid cells (default dense)")
    p.add_argument("--hidden", type=int_range(1, 1024), default=64, help="channels of the map convolutions (default 64)")
    p.add_argument("--epochs", type=int_range(1, 10_000), default=30, help="epochs (default 30)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=output_file, required=True, help="checkpoint file to write")
    add_force_arg(p)
    p.set_defaults(func=cmd_train_grounding)


def cmd_train_grounding(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.encoders import cached_encoder
    from backends.evaluation.annotations import load_annotations
    from backends.models import grounding as gm
    from backends.train import grounding as g
    from backends.train import pseudo as pq

    if args.pseudo == (args.annotations is not None):
        raise MomentLensError("give either --annotations FILE or --pseudo --videos DIR.")
    if args.pseudo and not args.videos:
        raise MomentLensError("--pseudo needs --videos DIR (folders or files of unlabeled videos).")
    refuse_to_replace([args.out], args.force)
    enc = cached_encoder(args.encoder)
    if args.pseudo:
        samples, pseudo, skipped = pq.pseudo_samples(args.videos, enc, args.num_clips, fps=args.fps)
        for path, why in skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
        print(f"{len(pseudo)} pseudo-queries from {len({q.video for q in pseudo})} videos, e.g. "
              + "; ".join(f"{Path(q.video).name} {q.start:.1f}-{q.end:.1f} s: {q.query!r}" for q in pseudo[:3]))
    else:
        queries = load_annotations(args.annotations, durations=args.durations or None)
        samples = g.samples_from_annotations(queries, enc, args.num_clips,
                                             video_dir=args.video_dir or args.annotations.resolve().parent,
                                             features_dir=args.features_dir, fps=args.fps)
    config = gm.GroundingConfig(feature_dim=enc.dim, hidden=args.hidden, num_clips=args.num_clips, mask=args.mask)
    settings = g.TrainSettings(epochs=args.epochs, lr=args.lr, seed=args.seed)
    head, log = g.train_head(samples, config, settings, show_progress=sys.stderr.isatty())
    out = g.save_head(head, args.out, enc.id, settings, log)
    print(f"trained on {len(samples)} query/video pairs, loss {log.losses[0]:.4f} -> {log.losses[-1]:.4f}; wrote {out}")
    return 0
