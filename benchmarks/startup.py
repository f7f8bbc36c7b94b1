"""Start-up of a text command: how long a fresh process takes to embed its first query, measured in one run.

Printed (medians of --repeats fresh processes each, after one warm-up run that fills the OS file cache):
- the bundled encoder's text side, process start to the first query's unit embedding: sentence-transformers
  (the naive baseline: `SentenceTransformer(folder).encode`) against `encoders.minilm` (the same files run in
  plain torch), the ratio, and the largest difference between their embeddings;
- `momentlens retrieve` on the shared dev clip (features cached), process start to the printed moments;
- `momentlens index stats` on a small library: as it runs now (the catalogue only) against the naive baseline of
  the same command with the encoders imported first (what the library module did at its top until 7e1cfb1).

    .venv/bin/python benchmarks/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERY = "leaves of a tree moving in the wind"

NAIVE = f"""
import sys, numpy as np
from sentence_transformers import SentenceTransformer
from backends.encoders.conse import minilm_path
v = SentenceTransformer(str(minilm_path()), device="cpu").encode([{QUERY!r}], normalize_embeddings=True)
np.save(sys.argv[1], np.asarray(v, np.float32))
"""
OURS = f"""
import sys, numpy as np
from backends.encoders.conse import minilm_path
from backends.encoders.minilm import MiniLM
v = MiniLM(minilm_path()).encode([{QUERY!r}])
np.save(sys.argv[1], v.numpy().astype(np.float32))
"""


def timed(argv: list[str], repeats: int) -> float:
    """Median wall time of `argv` in fresh processes (one unmeasured warm-up first)."""
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        subprocess.run(argv, check=True, cwd=ROOT, capture_output=True, timeout=600)
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "out" / "startup"
    out.mkdir(parents=True, exist_ok=True)
    naive = timed([sys.executable, "-c", NAIVE, str(out / "naive.npy")], args.repeats)
    ours = timed([sys.executable, "-c", OURS, str(out / "ours.npy")], args.repeats)
    diff = float(np.abs(np.load(out / "naive.npy") - np.load(out / "ours.npy")).max())
    print(f"first query embedding in a fresh process (median of {args.repeats}): sentence-transformers {naive:.2f} s, "
          f"encoders.minilm {ours:.2f} s ({naive / ours:.1f}x faster); largest embedding difference {diff:.1e}")
    clip = ROOT.parent / "shared" / "data" / "realmix_dev.mp4"
    if clip.is_file():
        cli = timed([sys.executable, "-m", "backends", "retrieve", str(clip), QUERY, "--json"], args.repeats)
        print(f"`momentlens retrieve` on realmix_dev.mp4 (features cached), process start to answer: {cli:.2f} s")
        lib = out / "library"
        subprocess.run([sys.executable, "-m", "backends", "index", "add", str(clip), "--library", str(lib),
                        "--encoder", "conse-tiny-random", "--json"], check=True, cwd=ROOT, capture_output=True,
                       timeout=600)
        stats = f"from backends.cli.main import main; main(['index', 'stats', '--library', {str(lib)!r}])"
        naive_stats = timed([sys.executable, "-c", "import backends.encoders; " + stats], args.repeats)
        ours_stats = timed([sys.executable, "-c", stats], args.repeats)
        print(f"`momentlens index stats`, process start to answer: with the encoders (torch) imported {naive_stats:.2f} s, "
              f"catalogue only {ours_stats:.2f} s ({naive_stats / ours_stats:.1f}x faster)")


if __name__ == "__main__":
    main()
