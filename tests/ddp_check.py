"""Run by tests/test_train_cvrl.py under `torchrun --nproc-per-node 2`: trains 2 steps with DDP (gloo), then
writes what each rank sees to OUT/rankN.json: a checksum of its parameters and the largest difference to
rank 0's, the gathered rows of a known per-rank tensor, and which gathered rows carry this rank's gradient."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.train.cvrl import gather_with_grad, preset, train_cvrl  # noqa: E402


def main() -> None:
    videos, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = preset("tiny", width=4, clip_len=4, decode_fps=4.0, crop_size=32, batch_size=4, pairs_per_10s=8, epochs=2,
                 proj_dim=16, proj_hidden=32, workers=0, carl_weight=0.5, fame_p=0.5)
    summary = train_cvrl(videos, out / "ddp", cfg, max_steps=2, show_progress=False)
    rank, world = dist.get_rank(), dist.get_world_size()

    model_params = list(summary.model.parameters())  # this rank's live parameters after the last step
    flat = torch.cat([p.detach().reshape(-1) for p in model_params])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)

    # the gathered batch: rank r contributes rows [r, 0] and [r, 1]
    x = torch.tensor([[float(rank), 0.0], [float(rank), 1.0]], requires_grad=True)
    all_rows = gather_with_grad(x)
    weights = torch.arange(1, all_rows.shape[0] + 1, dtype=torch.float32)[:, None]
    # every rank's loss weighs global row i by i + 1; all_gather's backward sums the ranks' gradients of this
    # rank's rows, so each of its rows gets world * (i + 1): which global rows are this rank's
    (all_rows * weights).sum().backward()
    grad_rows = [int(round(float(g[0]) / world)) - 1 for g in x.grad]
    (out / f"rank{rank}.json").write_text(json.dumps({
        "param_checksum": float(flat.double().sum()),
        "max_param_diff": float((gathered[0] - flat).abs().max()),
        "gathered": all_rows.detach().tolist(),
        "grad_rows": grad_rows,
        "steps": summary.steps,
        "world_size": summary.world_size,
    }))
    dist.barrier()
    dist.destroy_process_group()
    # end here, before interpreter finalization: gloo's worker threads have aborted a rank at that point after
    # everything above had run (seen once in CI: "terminate called without an active exception", SIGABRT)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)



if __name__ == "__main__":
    main()
