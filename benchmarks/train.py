"""CVRL training on the real footage available: does it learn, and how fast? Measured in one run.

Footage: the eight scenes of realmix_dev (cut by its annotation: vtest walkers, Big Buck Bunny, box, carphone,
Megamind, tree, cup, bikes) and charades_Y1HGC, nine sources (benchmarks/out/train/clips): the first 60 % of
every source is the training video (CVRL draws its clip pairs there) and, cut into 1 s clips, the probe's
gallery; the rest, cut the same way, gives the unseen clips.

Printed:
- speed of the tiny config: training steps/s and clips/s; the data loader alone (decode + CVRL augmentation,
  DataLoader workers) vs the model alone (forward + backward on ready batches), in clips/s, and their ratio
  (> 1: the loader is not the bottleneck);
- evidence that it learns: a 1-nearest-neighbour probe telling which source an unseen clip comes from, on the
  trained encoder vs the same architecture at its random initialisation, and the chance level.

    .venv/bin/python benchmarks/train.py [--epochs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends.core import paths
from backends.encoders.video import VideoEncoder
from backends.evaluation.probe import cut_clips, knn_probe, perturbed_copies
from backends.models.video import build_video_backbone
from backends.train.cvrl import CvrlModel, CvrlPairs, clip_loader, info_nce, preset, scan_videos, to_model_input, train_cvrl

OUT = ROOT / "benchmarks" / "out" / "train"


def sources() -> dict:
    data = paths.shared_data_dir()
    if data is None:
        sys.exit("../shared/data is absent (set MOMENTLENS_DATA)")
    realmix = json.loads((data / "realmix_dev.json").read_text())
    out = {f"realmix-{s['id']}": (data / "realmix_dev.mp4", float(s["start"]), float(s["end"])) for s in realmix["segments"]}
    out["charades-Y1HGC"] = (data / "charades_Y1HGC.mp4", 0.0, None)
    return out


def loader_throughput(cfg, folder: Path, batches: int) -> float:
    entries, _ = scan_videos(folder, cfg.decode_fps)
    loader = clip_loader(CvrlPairs(entries, cfg), cfg)
    it = iter(loader)
    next(it)  # workers started
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        batch = next(it)
        n += 2 * len(batch["v1"])
    return n / (time.perf_counter() - t0)


def model_throughput(cfg, steps: int) -> float:
    torch.manual_seed(0)
    model = CvrlModel(build_video_backbone(cfg.model()), cfg.proj_hidden, cfg.proj_dim, cfg.carl_weight > 0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    u8 = torch.randint(0, 256, (cfg.batch_size, cfg.clip_len, cfg.crop_size, cfg.crop_size, 3), dtype=torch.uint8)
    x = to_model_input(u8, cfg.model(), torch.device("cpu"))
    x = torch.cat([x, x.flip(0)])

    def step():
        z, _ = model(x)
        loss = info_nce(z[: cfg.batch_size], z[cfg.batch_size :], cfg.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 2 * cfg.batch_size * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--pairs", type=float, default=64, help="clip pairs per 10 s of training video and epoch")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t0 = time.perf_counter()
    clips = cut_clips(sources(), OUT / "clips", clip_seconds=1.0, train_fraction=0.6)
    counts = clips.counts()
    print(f"footage: {len(counts)} sources, {sum(a for a, _ in counts.values())} training clips, "
          f"{sum(b for _, b in counts.values())} unseen clips (cut in {time.perf_counter() - t0:.1f} s)")

    cfg = preset("tiny", epochs=args.epochs, workers=args.workers, seed=args.seed, pairs_per_10s=args.pairs)
    loader_cps = loader_throughput(cfg, OUT / "clips" / "train_videos", batches=8)
    model_cps = model_throughput(cfg, steps=4)
    print(f"data loader alone: {loader_cps:.1f} clips/s ({args.workers} workers); model alone (fwd+bwd): "
          f"{model_cps:.1f} clips/s; loader / model = {loader_cps / model_cps:.2f} "
          f"({'the loader is not' if loader_cps > model_cps else 'the LOADER IS'} the bottleneck)")

    ckpt = OUT / "cvrl_tiny"
    for stale in OUT.glob("cvrl_tiny.*"):
        stale.unlink()
    summary = train_cvrl(OUT / "clips" / "train_videos", ckpt, cfg, show_progress=True)
    steps_per_s = summary.steps / summary.seconds
    print(f"training (tiny: {cfg.arch} w{cfg.width}, {cfg.clip_len} frames at {cfg.crop_size} px, batch {cfg.batch_size}): "
          f"{summary.steps} steps in {summary.seconds:.1f} s = {steps_per_s:.2f} steps/s, "
          f"{summary.clips_per_second:.1f} clips/s; loss {summary.losses[0]:.3f} -> {np.mean(summary.losses[-5:]):.3f} "
          f"(mean of the last 5; chance {np.log(2 * cfg.batch_size - 1):.3f})")

    device = torch.device("cpu")
    trained = VideoEncoder(device, *_load(summary.weights))
    torch.manual_seed(cfg.seed)  # the same initialisation the run started from
    random_backbone = build_video_backbone(cfg.model())
    random = VideoEncoder(device, random_backbone.eval(), cfg.model(), "video:random-init", "seed0")
    perturbed = perturbed_copies(clips.test, OUT / "clips" / "test_perturbed", seed=args.seed, draws=4)
    for label, queries in (("unseen clips as they are", None), ("unseen clips with an appearance change "
                                                                "(four CVRL view-2 draws each)", perturbed)):
        res_trained = knn_probe(trained, clips, queries_by_source=queries)
        res_random = knn_probe(random, clips, queries_by_source=queries)
        print(f"1-NN source probe, {label}: {res_trained.test_clips} clips of {res_trained.sources} sources "
              f"(gallery: {res_trained.train_clips} training clips)")
        print(f"  trained encoder   {res_trained.accuracy:.3f}")
        print(f"  random init       {res_random.accuracy:.3f}")
        print(f"  chance            {res_trained.chance:.3f}")
        print("  per source (trained / random): " + ", ".join(
            f"{s.replace('realmix-', '')} {res_trained.per_source[s]:.2f}/{res_random.per_source[s]:.2f}"
            for s in res_trained.per_source))


def _load(path: Path):
    from backends.models.video import load_video_checkpoint

    ckpt = load_video_checkpoint(path)
    return ckpt.backbone, ckpt.model, "video:" + path.name, "trained"


if __name__ == "__main__":
    main()
