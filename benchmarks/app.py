"""The web app's latency through its API (gradio_client against the launched app), bundled encoder.

Cold: a 60 s clip uploaded to `/retrieve` with an empty feature cache (upload, decode, encode, index, query).
Warm: another query on the same clip (features cached; the clip is uploaded again, as a script would).
The encoder's weights are loaded before timing (they load once per server process), and reported apart.
Goal: warm under 300 ms end to end.

    .venv/bin/python benchmarks/app.py [--encoder NAME] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
QUERIES = ("people riding bicycles", "a rabbit in a grassy meadow", "a person talking on a phone",
           "pedestrians walking on a path across a lawn", "a tree moving in the wind")


def sixty_second_clip() -> Path:
    """The first 60 s of realmix_dev (real footage, 8 scenes) as an H.264 mp4 in benchmarks/out/."""
    from backends.core.paths import default_sample_clip
    from backends.io.video import VideoReader, write_video

    out = OUT / "realmix_60s.mp4"
    if not out.is_file():
        src = default_sample_clip()
        reader = VideoReader(src, fps=None, end=60.0)
        write_video(out, (rgb for _, rgb in reader), fps=reader.info.fps)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="conse-effnet-minilm")
    parser.add_argument("--repeat", type=int, default=len(QUERIES) - 1, help="warm queries to time")
    args = parser.parse_args()
    os.environ["MOMENTLENS_CACHE"] = tempfile.mkdtemp(prefix="momentlens-bench-cache-")  # cold: empty cache

    from gradio_client import Client, handle_file

    from app import build_app
    from backends.encoders import cached_encoder
    from backends.io.video import probe

    clip = sixty_second_clip()
    t0 = time.perf_counter()
    cached_encoder(args.encoder)
    load_s = time.perf_counter() - t0
    demo = build_app(encoder=args.encoder)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        t0 = time.perf_counter()
        summary = client.predict(handle_file(clip), QUERIES[0], args.encoder, api_name="/retrieve")[0]
        cold = time.perf_counter() - t0
        warm = []
        for q in QUERIES[1:1 + args.repeat]:
            t0 = time.perf_counter()
            client.predict(handle_file(clip), q, args.encoder, api_name="/retrieve")
            warm.append(time.perf_counter() - t0)
    finally:
        demo.close()
    print(f"clip: {clip.name}, {probe(clip).duration:.1f} s; encoder {args.encoder} (weights loaded in {load_s:.1f} s, not counted)")
    print(f"cold (upload + encode + query, empty cache): {cold * 1000:8.0f} ms   [{summary.split(' · ')[-1]} inside the handler]")
    print(f"warm (second query, same clip), median of {len(warm)}: {statistics.median(warm) * 1000:8.0f} ms "
          f"(min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f}); goal < 300 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
