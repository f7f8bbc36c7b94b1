"""Encoding throughput and memory, measured in one run on the same real clip.

Prints: decode-only, encoder-only and end-to-end sampled frames/s for `encode_video` on
../shared/data/realmix_dev.mp4 at 1 fps with the bundled encoder; the ratio of end-to-end to a naive
baseline (OpenCV decodes every frame, keeps one per second by frame index, encodes one frame at a time
in default fp32; also reported at our precision, to separate batching/overlap from bf16);
and the peak RSS of a fresh process encoding a 1280x720 video of 10 minutes and of 1 hour, built here
by looping the real clip (written to benchmarks/out/, not committed).

    .venv/bin/python benchmarks/encode.py [--skip-long] [--encoder NAME]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends.core.paths import shared_data_dir
from backends.encoders import create_encoder
from backends.features import encode_video
from backends.io.video import VideoReader, read_frames, write_video

OUT = ROOT / "benchmarks" / "out"


def timed(fn, repeat=1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def naive_baseline(path: Path, enc, fps: float = 1.0) -> int:
    """OpenCV decodes every frame; one frame per second kept by frame index; batch size 1."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    native = cap.get(cv2.CAP_PROP_FPS) or 25.0
    every = max(1, int(round(native / fps)))
    i = kept = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % every == 0:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            enc.encode_frames(rgb[None])
            kept += 1
        i += 1
    cap.release()
    return kept


def build_long_video(src: Path, minutes: int) -> Path:
    """A 1280x720 H.264 video of `minutes` minutes made by looping the real clip (5 fps keeps it quick)."""
    out = OUT / f"loop_{minutes}min_720p.mp4"
    if out.is_file():
        return out
    frames, _ = read_frames(src, fps=5.0, size=(1280, 720))
    n = minutes * 60 * 5

    def gen():
        for i in range(n):
            yield frames[i % len(frames)]

    print(f"  building {out.name} ({n} frames) ...", flush=True)
    import av  # noqa: F401  (PyAV encodes H.264 without a system ffmpeg)

    write_video(out, gen(), fps=5)
    return out


PEAK_RSS_CHILD = r"""
import sys, threading, time, psutil
sys.path.insert(0, sys.argv[1])
from backends.features import encode_video
proc = psutil.Process(); peak = [0]; done = [False]
def watch():
    while not done[0]:
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
t0 = time.perf_counter()
f = encode_video(sys.argv[2], sys.argv[3], fps=1.0, cache=False, max_duration=4 * 3600)
done[0] = True
peak[0] = max(peak[0], proc.memory_info().rss)
print(len(f), round(f.duration, 1), peak[0], round(time.perf_counter() - t0, 1))
"""


def peak_rss(path: Path, encoder: str) -> tuple[int, float, int, float]:
    r = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, str(ROOT), str(path), encoder],
                       capture_output=True, text=True, check=True)
    n, dur, peak, secs = r.stdout.split()
    return int(n), float(dur), int(peak), float(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="conse-effnet-minilm")
    ap.add_argument("--skip-long", action="store_true", help="skip the 10-min / 1-h peak-memory runs")
    args = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data is absent: set MOMENTLENS_DATA to the shared data folder")
    clip = data / "realmix_dev.mp4"
    enc = create_encoder(args.encoder)
    print(f"encoder {enc.id} on {enc.device}, torch threads {__import__('torch').get_num_threads()}, clip {clip.name}")

    # warm-up: first-call allocations, label embeddings, file hash
    encode_video(clip, enc, fps=1.0, cache=False)

    t_dec, frames = timed(lambda: [f for _, f in VideoReader(clip, fps=1.0, size=enc.input_size)], repeat=2)
    n = len(frames)
    batch = np.stack(frames)
    t_enc, _ = timed(lambda: enc.encode_frames(batch), repeat=2)
    t_e2e, feats = timed(lambda: encode_video(clip, enc, fps=1.0, cache=False), repeat=2)
    t_naive_same, kept = timed(lambda: naive_baseline(clip, enc), repeat=1)
    # the naive baseline as a plain implementation runs it: the model as loaded (BatchNorm not folded), fp32
    naive_enc = enc
    if args.encoder == "conse-effnet-minilm":
        from backends.encoders.conse import ConseEncoder

        os.environ["MOMENTLENS_PRECISION"] = "fp32"
        naive_enc = ConseEncoder(enc.device, text_model=enc.text_model, fuse_batchnorm=False)
        del os.environ["MOMENTLENS_PRECISION"]
        naive_enc.encode_frames(batch[:2])
    t_naive, kept = timed(lambda: naive_baseline(clip, naive_enc), repeat=1)
    t_cached, _ = timed(lambda: encode_video(clip, enc, fps=1.0, cache=True), repeat=1)
    t_hit, hit = timed(lambda: encode_video(clip, enc, fps=1.0, cache=True), repeat=3)

    print(f"sampled frames: {n} (1 fps over {feats.duration:.1f} s)")
    print(f"decode only      : {n / t_dec:8.1f} frames/s  ({t_dec:.2f} s)")
    print(f"encoder only     : {n / t_enc:8.1f} frames/s  ({t_enc:.2f} s, batch {enc.batch_size})")
    print(f"end to end       : {n / t_e2e:8.1f} frames/s  ({t_e2e:.2f} s, decode overlapped with inference)")
    print(f"naive baseline   : {kept / t_naive:8.1f} frames/s  ({t_naive:.2f} s, OpenCV every frame, batch 1, fp32, BatchNorm unfolded)")
    print(f"naive, same precision: {kept / t_naive_same:4.1f} frames/s  ({t_naive_same:.2f} s, batch 1, {enc.id.split('-')[-1]})")
    print(f"ratio end-to-end / naive        : {t_naive / t_e2e * n / max(kept, 1):.2f}x   (goal >= 3x)")
    print(f"ratio end-to-end / naive (same precision): {t_naive_same / t_e2e * n / max(kept, 1):.2f}x  "
          "(batching + decode overlap alone)")
    print(f"ratio end-to-end / encoder-only : {t_enc / t_e2e:.2f}    (goal >= 0.8)")
    print(f"cache hit        : {t_hit * 1000:.1f} ms (from_cache={hit.from_cache}); first cached run {t_cached:.2f} s")

    if args.skip_long:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for minutes in (10, 60):
        path = build_long_video(clip, minutes)
        frames_n, dur, peak, secs = peak_rss(path, args.encoder)
        print(f"peak RSS, {minutes:2d}-min 1280x720 video: {peak / 2**30:.2f} GiB "
              f"({frames_n} frames over {dur:.0f} s encoded in {secs:.0f} s; goal < 2 GiB, flat in length)")


if __name__ == "__main__":
    main()
