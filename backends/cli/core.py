"""Core sub-commands: `encoders`, `encode`, `cache`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from backends.cli.common import add_encoder_arg, add_video_args, emit_json, output_file, replaced, say_written, written_whole
from backends.core.errors import MomentLensError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encoders", help="list registered encoders and whether their weights are available offline")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("checkpoints", help="list the models folder: each checkpoint's kind, config and how to use it")
    p.add_argument("folder", nargs="?", type=Path, default=None,
                   help="folder to list (default: $MOMENTLENS_MODELS, else ~/.cache/momentlens/models)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_checkpoints)

    p = sub.add_parser("encode", help="embed the frames of a video (cached)")
    p.add_argument("video", help="video file (mp4, avi, webm, mov)")
    add_encoder_arg(p)
    add_video_args(p)
    p.add_argument("--out", type=output_file, help="write features/times to this .npz file (the name as given)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("cache", help="show or clear the feature cache and other derived files (never the library or models)")
    p.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cache)


def cmd_checkpoints(args: argparse.Namespace) -> int:
    # deferred: these import torch; `momentlens --help` must start in about 0.5 s
    from backends.core.paths import models_dir
    from backends.views.offers import list_checkpoints

    folder = args.folder or models_dir()
    if args.folder is not None and not Path(args.folder).expanduser().is_dir():
        raise MomentLensError(f"{args.folder} is not a folder: check the path.")
    rows = list_checkpoints(folder)
    if args.json:
        emit_json({"folder": str(folder), "checkpoints": rows})
        return 0
    if not rows:
        print(f"no checkpoints in {folder} (train one with `momentlens train cvrl` or `train adapter`, or copy a CLIP .pt there)")
        return 0
    print(f"{len(rows)} checkpoint(s) in {folder}:")
    for r in rows:
        print(f"  {r['name']}  {r['size_mb']} MB  {r['kind'] or 'not loadable'}")
        if r["use"]:
            print(f"      use: {r['use']}")
        for k, v in r["config"].items():
            print(f"      {k}: {v}")
        if r["problem"]:
            print(f"      {r['problem']}")
    return 0


def cmd_encoders(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.encoders import default_encoder_name, registry
    from backends.encoders.clip_encoder import clip_weights_file

    rows: list[dict[str, Any]] = []
    for name, spec in registry().items():
        if spec.family:
            for model in spec.models() if spec.models is not None else []:
                file = clip_weights_file(model) if name == "clip:" else None
                rows.append({"name": f"{name}{model}", "available": bool(spec.available(model)),
                             "description": spec.description + (f" (file {file.name})" if file else "")})
            rows.append({"name": f"{name}/path/to/model.pt", "available": None, "description": spec.description})
        else:
            rows.append({"name": name, "available": bool(spec.available(None)), "description": spec.description})
    default = default_encoder_name()
    if args.json:
        emit_json({"default": default, "encoders": rows})
        return 0
    for r in rows:
        mark = {True: "offline", False: "missing", None: "-"}[r["available"]]
        star = "*" if r["name"] == default else " "
        print(f"{star} {r['name']:<34} {mark:<8} {r['description']}")
    print(f"(* default: {default})")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.features import encode_video

    feats = encode_video(args.video, args.encoder, fps=args.fps, cache=not args.no_cache,
                         max_duration=args.max_duration)
    again = ""
    if args.out:  # written whole under exactly the name given (np.savez would add .npz to notes.txt)
        again = replaced(args.out)
        with written_whole(args.out) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats.features, times=feats.times)
    summary = {
        "video": str(args.video), "encoder": feats.encoder_id, "frames": len(feats), "dim": int(feats.features.shape[1]),
        "fps": feats.fps, "duration": round(feats.duration, 3), "from_cache": feats.from_cache,
        "out": str(args.out) if args.out else None,
    }
    if args.json:
        emit_json(summary)
        say_written(f"wrote {args.out}{again}" if again else None, as_json=True)  # an overwrite is never silent
    else:
        src = "from cache" if feats.from_cache else "computed"
        dest = f" -> {args.out}{again}" if args.out else ""
        print(f"{Path(args.video).name}: {len(feats)} frames x {summary['dim']} ({feats.encoder_id}, "
              f"{feats.fps:g} fps, {feats.duration:.1f} s), {src}{dest}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.io.cache import FeatureCache

    store = FeatureCache()
    kept = [p.name for p in store.kept()]
    keeps = f"; kept: {', '.join(kept)}" if kept else ""
    if args.action == "clear":
        freed = store.clear()
        info: dict[str, Any] = {"root": str(store.root), "cleared_bytes": freed, "kept": kept}
        emit_json(info) if args.json else print(f"cleared {freed / 2**20:.1f} MiB of features and other derived files "
                                                f"from {store.root}{keeps}")
        return 0
    size = store.size_bytes()
    info = {"root": str(store.root), "entries": len(store.entries()), "bytes": size, "kept": kept}
    if args.json:
        emit_json(info)
    else:
        print(f"{store.root}: {info['entries']} feature entries, {size / 2**20:.1f} MiB of derived files "
              f"(`cache clear` deletes them){keeps}")
    return 0
