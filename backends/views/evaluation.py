"""Evaluate our model on an annotated dataset, with the blind prior baseline beside it when a train split exists.

One call for the UIs (the app's retrieval tab, the notebooks): the model's metrics and the prior's,
under the same named protocol, plus per-query rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from backends.core.contracts import ProgressFn
from backends.evaluation.annotations import load_annotations
from backends.evaluation.baselines import run_baseline
from backends.evaluation.charades import CHARADES_STA
from backends.evaluation.metrics import MOMENTLENS, evaluate_windows
from backends.retrieval.engine import predict_for_annotations

PROTOCOLS = {"momentlens": MOMENTLENS, "charades-sta": CHARADES_STA}


def evaluate_with_baseline(
    annotations: str | os.PathLike,
    video_dir: str | os.PathLike | None = None,
    *,
    encoder: str | None = None,
    head: str | None = None,
    protocol: str = "momentlens",
    train: str | os.PathLike | None = None,
    durations: Sequence[str | os.PathLike] | None = None,
    baseline_runs: int = 10,
    seed: int = 0,
    progress: ProgressFn | None = None,
    confine: bool = False,
) -> dict:
    """{"protocol", "num_queries", "model": metrics, "prior": metrics or None, "per_query": rows}.

    Videos are looked up in `video_dir` (default: beside the annotation file). With a `train` annotation
    file the KDE prior of Otani et al. (2020) is fitted on it and scored on the same test queries.
    `confine=True` (the web app) looks videos up inside `video_dir` only.
    """

    proto = PROTOCOLS[protocol]
    queries = load_annotations(annotations, durations=list(durations) if durations else None)
    preds = predict_for_annotations(queries, video_dir=video_dir or Path(annotations).resolve().parent,
                                    encoder=encoder, head=head, top_k=10, progress=progress, confine=confine)
    model = evaluate_windows(queries, preds, proto)
    prior = None
    if train:
        train_queries = load_annotations(train, durations=list(durations) if durations else None)
        prior = run_baseline("prior", train_queries, queries, seed=seed, runs=baseline_runs, protocol=proto)
    return {
        "protocol": proto.describe(),
        "num_queries": model.num_queries,
        "model": model.metrics,
        "prior": None if prior is None else {**prior.mean, "seed": seed, "runs": baseline_runs},
        "per_query": model.to_dict(per_query=True)["per_query"],
    }
