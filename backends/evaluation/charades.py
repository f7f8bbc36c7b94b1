"""The Charades-STA protocol (as 2D-TAN's evaluation and Otani et al., BMVC 2020, compute it).

- Annotations: `VID START END##query`; with Charades v1 durations, end times are clipped to the video and
  annotations with start >= end are dropped (see `annotations.read_charades_sta`).
- Predictions: jsonl lines `{"vid", "query", "pred_relevant_windows": [[s, e, score], ...]}`, keyed by
  (video id, query).
- Metrics: NMS 0.5 over the ranked windows before taking the top n; strict `IoU > m`; R1/R5 at
  m = 0.3/0.5/0.7 and mIoU of the top-1 window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from backends.evaluation.annotations import (
    AnnotatedQuery,
    DurationsArg,
    read_charades_sta,
    read_predictions,
)
from backends.evaluation.metrics import (
    EvaluationResult,
    Protocol,
    align_predictions,
    evaluate_windows,
)

CHARADES_STA = Protocol("charades-sta", strict=True, nms_threshold=0.5)


def default_duration_files(data_dir: Path | None) -> list[Path]:
    """`Charades_v1_{train,test}.csv` under a shared data folder's `annotations/`, when present."""
    if data_dir is None:
        return []
    files = [data_dir / "annotations" / f"Charades_v1_{s}.csv" for s in ("train", "test")]
    return [f for f in files if f.is_file()]


def evaluate_charades(
    queries: Sequence[AnnotatedQuery], predictions: Iterable[dict], protocol: Protocol = CHARADES_STA
) -> EvaluationResult:
    """Score Charades-STA predictions (dicts keyed by `vid` + `query`, or by `qid`) under the strict protocol."""
    return evaluate_windows(queries, align_predictions(queries, predictions), protocol)


def evaluate_charades_files(
    annotations: str | Path, predictions: str | Path, durations: DurationsArg = None
) -> EvaluationResult:
    """Read a Charades-STA txt and a predictions jsonl, then score them."""
    return evaluate_charades(read_charades_sta(annotations, durations), read_predictions(predictions))
