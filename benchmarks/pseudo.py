"""PSVL pseudo-supervision vs the zero-shot scorer, on footage none of the training videos came from. One run.

Training: `train.pseudo.pseudo_samples` (the path of `momentlens train grounding --pseudo --videos DIR`) on a folder
of unlabeled videos made from part of the real footage (vtest, bigbuckbunny, box, bikes and charades_Y1HGC):
12 realmix-like concatenations (letterboxed 640x360 scenes at 1 fps, random orders and trims) written into
benchmarks/out/pseudo/train, plus the source clips themselves (read where they are). No annotation is read.
Evaluation: BSP concatenations of the *other* footage (carphone, Megamind, tree, cup), 8 random orders, with
two query sets: the queries written for the package clips (benchmarks/retrieval.py CLIP_QUERIES) and
realmix_dev's queries for the same scenes. Also, for reference, BSP of the training footage ("seen").
Printed: R1/R5 at IoU 0.3/0.5/0.7 and mIoU (momentlens protocol) for the default zero-shot scorer and the head.

    .venv/bin/python benchmarks/pseudo.py [--epochs 30] [--encoder NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from retrieval import fmt, letterbox, letterboxed_bsp_sets, package_clip_paths

from backends.core import paths
from backends.encoders import cached_encoder
from backends.evaluation.metrics import evaluate_windows
from backends.io.video import read_frames, write_video
from backends.models import grounding as gm
from backends.retrieval import engine
from backends.train import grounding as g
from backends.train.pseudo import pseudo_samples

OUT = ROOT / "benchmarks" / "out" / "pseudo"
TRAIN_FOOTAGE = ("vtest", "bigbuckbunny", "box", "bikes")
TEST_FOOTAGE = ("carphone_pristine", "Megamind", "tree", "cup")


def training_folder(clips: dict[str, Path], videos: int = 12, seed: int = 3) -> tuple[Path, list[Path]]:
    folder = OUT / "train"
    folder.mkdir(parents=True, exist_ok=True)
    sources = {n: clips[n] for n in TRAIN_FOOTAGE if n in clips}
    sources["charades_Y1HGC"] = paths.shared_data_dir() / "charades_Y1HGC.mp4"
    frames = {n: read_frames(p, fps=1.0)[0] for n, p in sources.items()}
    rng = np.random.default_rng(seed)
    for k in range(videos):
        target = folder / f"mix_{k:02d}.mp4"
        order = rng.permutation(sorted(frames))[: int(rng.integers(3, len(frames) + 1))]
        canvas = []
        for name in order:
            f = frames[str(name)]
            keep = max(3, int(round(len(f) * rng.uniform(0.5, 1.0))))
            off = int(rng.integers(0, len(f) - keep + 1))
            canvas += [letterbox(x) for x in f[off : off + keep]]
        if not target.exists():
            write_video(target, canvas, 1.0)
    return folder, list(sources.values())


def evaluate(enc, head, sets) -> None:
    for name, (qs, videos) in sets:
        zs_preds, head_preds = [], []
        for feats, texts in videos:
            index = engine.build_index(feats.features, feats.times, feats.duration, feats.visual, 1.0)
            vecs = np.asarray(enc.encode_text(texts), np.float32)
            for vec in vecs:
                _, scores = engine.score_candidates(index, vec)
                zs_preds.append([[m.start, m.end, m.score] for m in engine.top_moments(index, scores, 10, 0.5)])
                sample = g.make_sample(feats.features, feats.times, feats.duration, vec, (0.0, 1.0), head.num_clips)
                head_preds.append(g.predict_windows(head, sample, top_k=10))
        print(f"  {name}: {len(qs)} queries")
        print(f"    zero-shot (default scorer) {fmt(evaluate_windows(qs, zs_preds).metrics)}")
        print(f"    pseudo-supervised head     {fmt(evaluate_windows(qs, head_preds).metrics)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="conse-effnet-minilm")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    enc = cached_encoder(args.encoder)
    clips = package_clip_paths()
    folder, sources = training_folder(clips)
    t0 = time.perf_counter()
    samples, pseudo, skipped = pseudo_samples([folder, *sources], enc, num_clips=16)  # the mixes and their sources
    print(f"pseudo-queries: {len(pseudo)} from {len({q.video for q in pseudo})} videos in {time.perf_counter() - t0:.0f} s "
          f"({len(skipped)} skipped); e.g. " + "; ".join(f"{Path(q.video).name} {q.start:.0f}-{q.end:.0f} s {q.query!r}"
                                                           for q in pseudo[:4]))
    config = gm.GroundingConfig(feature_dim=enc.dim, hidden=64, num_clips=16, mask="dense")
    settings = g.TrainSettings(epochs=args.epochs)
    t0 = time.perf_counter()
    head, log = g.train_head(samples, config, settings)
    print(f"head: {args.epochs} epochs in {time.perf_counter() - t0:.0f} s, loss {log.losses[0]:.4f} -> {log.losses[-1]:.4f}")
    unseen = {n: clips[n] for n in TEST_FOOTAGE if n in clips}
    seen = {n: clips[n] for n in TRAIN_FOOTAGE if n in clips}
    (w_u, r_u) = letterboxed_bsp_sets(enc, unseen, orders=8, seed=5)
    (w_s, r_s) = letterboxed_bsp_sets(enc, seen, orders=8, seed=5)
    print("evaluation (momentlens protocol):")
    evaluate(enc, head, [("unseen footage, queries written here", w_u), ("unseen footage, realmix_dev's queries", r_u),
                         ("seen footage (reference), queries written here", w_s),
                         ("seen footage (reference), realmix_dev's queries", r_s)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
