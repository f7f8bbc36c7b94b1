"""`momentlens augment VIDEO`: the augmentation view (CVRL, FAME, temporal gradient, optical flow).

    momentlens augment clip.mp4 --method cvrl --seed 3 --json
    momentlens augment clip.mp4 --method all --seed 3 --html aug.html
    momentlens augment clip.mp4 --only jitter --strength 0.5 --out aug_png/
    momentlens augment clip.mp4 --inconsistent --html inconsistent.html
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from backends.analysis.augment import METHODS
from backends.analysis.clips import AugmentError
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig
from backends.cli.common import emit_json, float_range, int_range, output_dir, output_file, say_written, seed_value, write_html, write_run


def _augmentation_names(text: str) -> list[str]:
    """`--only crop,flip` / `--skip blur`: comma-separated augmentation names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in AUGMENTATIONS:
            raise argparse.ArgumentTypeError(
                f"unknown augmentation {n!r}; available: {', '.join(AUGMENTATIONS)}"
            )
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `augment` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser(
        "augment",
        help="show CVRL / FAME augmentations, temporal gradient and optical flow of a video",
        description="Sample CVRL's two views of a clip (same draw on every frame) and its temporal gap, "
        "FAME foreground-background merging, temporal gradient and Farneback flow; deterministic in --seed.",
    )
    p.add_argument("video", type=Path, help="video file")
    p.add_argument("--method", choices=METHODS, default="cvrl", help="which view to compute (default cvrl)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed; the same seed gives the same output")
    p.add_argument("--json", action="store_true", help="print the sampled parameters as JSON on stdout")
    dest = p.add_mutually_exclusive_group()
    dest.add_argument("--html", type=output_file, metavar="FILE", help="write a standalone (offline) plotly HTML")
    dest.add_argument("--out", type=output_dir, metavar="DIR", help="write PNG frame grids and maps into DIR")
    aug = p.add_argument_group("CVRL ablations")
    aug.add_argument("--strength", type=float_range(0.0, 10.0), default=1.0, help="colour jitter strength s (default 1.0)")
    aug.add_argument("--only", action="append", type=_augmentation_names, metavar="AUG[,AUG]",
                     help=f"apply only these ({'|'.join(AUGMENTATIONS)}), each with probability 1; repeatable")
    aug.add_argument("--skip", action="append", type=_augmentation_names, metavar="AUG[,AUG]",
                     help="switch these augmentations off, keep the others' probabilities; repeatable")
    aug.add_argument("--inconsistent", action="store_true",
                     help="draw new parameters on every frame (the ablation CVRL argues against)")
    aug.add_argument("--crop-size", type=int_range(16, 1024), default=224, help="output side of the crop (default 224)")
    aug.add_argument("--frames", type=int_range(1, 64), default=16, help="frames per clip (default 16)")
    aug.add_argument("--stride", type=int_range(1, 16), default=2, help="temporal stride within a clip (default 2)")
    aug.add_argument("--encoder", default=None, metavar="video:CKPT",
                     help="show the augmentation a trained video encoder saw: its saved CVRL settings and decode "
                     "rate replace --crop-size/--frames/--stride/--strength")
    src = p.add_argument_group("input")
    src.add_argument("--background", type=Path, metavar="VIDEO",
                     help="FAME: take the background from this video (default: CVRL's second clip)")
    src.add_argument("--start", type=float_range(0.0), default=0.0, help="read from this time in seconds")
    src.add_argument("--max-frames", type=int_range(1, 3000), default=240, help="read at most this many frames (default 240)")
    p.set_defaults(func=run_augment)


def _enabled(args: argparse.Namespace) -> tuple[list[str], bool]:
    if args.only and args.skip:
        raise AugmentError("use either --only or --skip, not both.")
    if args.only:
        chosen = {n for group in args.only for n in group}
        return [a for a in AUGMENTATIONS if a in chosen], True
    skipped = {n for group in (args.skip or []) for n in group}
    return [a for a in AUGMENTATIONS if a not in skipped], False


def run_augment(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.figures.augment import save_images
    from backends.views.augment import augment_view, training_augmentation

    if args.encoder and training_augmentation(args.encoder) is None:  # never ignored without a word
        raise AugmentError(f"--encoder shows the augmentation a trained video encoder saw; {args.encoder} is not one "
                           "(give video:PATH.safetensors from `momentlens train cvrl`, or drop --encoder).")
    if args.background is not None and args.method not in ("fame", "all"):
        raise AugmentError("--background is FAME's background video; it has no effect with "
                           f"--method {args.method} (pass --method fame, or drop --background).")
    enabled, force = _enabled(args)
    config = CvrlConfig(crop_size=args.crop_size, strength=args.strength,
                        num_frames=args.frames, stride=args.stride)
    result, fig = augment_view(
        args.video, args.method, args.seed, config=config, enabled=enabled, force=force,
        inconsistent=args.inconsistent, background_path=args.background, start=args.start,
        max_frames=args.max_frames, encoder=args.encoder,
    )
    wrote = [write_html(fig, args.html)] if args.html else []
    if args.out:  # the earlier run's images there go first: the folder never mixes two runs
        written, again = write_run(args.out, "augment", "images", lambda: save_images(result, args.out))
        wrote.append(f"wrote {len(written)} images into {args.out}{again}")
    if args.json:
        emit_json(result.to_dict())
    else:
        _print_summary(result, args)
    for line in wrote:
        say_written(line, args.json)
    return 0


def _print_summary(result: Any, args: argparse.Namespace) -> None:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.figures.augment import describe_cvrl_params

    v = result.video
    print(f"{v.get('name', 'video')}: {v['frames']} frames {v['width']}x{v['height']}, "
          f"method {result.method}, seed {result.seed}")
    if result.cvrl is not None:
        t = result.cvrl.temporal
        print(f"CVRL clip starts {t.starts} (gap {t.gap} of at most {t.max_gap})")
        for i, ps in enumerate(result.cvrl.params, 1):
            if result.cvrl.inconsistent:
                print(f"view {i}: {len(ps)} per-frame draws (inconsistent ablation)")
            else:
                print(f"view {i}:")
                for line in describe_cvrl_params(ps[0]):
                    print("  " + line)
    for name in ("fame", "tgrad", "flow"):
        part = getattr(result, name)
        if part is not None:
            print(f"{name}: " + ", ".join(f"{k} {val}" for k, val in part.to_dict().items()))
