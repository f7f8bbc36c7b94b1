"""Moment-retrieval metrics of TALL/CTRL (Gao et al. 2017): R@n, IoU=m and mIoU, with a named protocol.

The momentlens protocol (docs/methods/metrics.md): predictions are ranked by score, reduced by greedy NMS
(threshold a parameter), and a query counts as a hit for R@n, IoU=m when one of the top-n kept windows has
IoU >= m with a ground-truth window (the best one when there are several); mIoU averages the top-1 IoU.
The Charades-STA protocol (`backends.evaluation.charades`) is the same computation with strict IoU > m.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.analysis.windows import nms, temporal_iou
from backends.core.errors import AnnotationError, MomentLensError
from backends.evaluation.annotations import AnnotatedQuery


@dataclass(frozen=True)
class Protocol:
    """How R@n, IoU=m is computed; printed with every result."""

    name: str  # short name used on the command line
    strict: bool  # True: hit when IoU > m (2D-TAN, Otani et al.); False: IoU >= m
    nms_threshold: float | None  # greedy NMS threshold applied before taking the top n; None: no NMS
    iou_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)  # the m of R@n, IoU=m
    ranks: tuple[int, ...] = (1, 5)  # the n of R@n

    def describe(self) -> str:
        cmp = "IoU > m (strict)" if self.strict else "IoU >= m"
        nms_txt = f"NMS {self.nms_threshold:g} before top-k" if self.nms_threshold is not None else "no NMS"
        return f"{self.name}: R@n with {cmp}, {nms_txt}, mIoU of the top-1 window"

    def to_dict(self) -> dict:
        return {"name": self.name, "strict": self.strict, "nms": self.nms_threshold,
                "iou_thresholds": list(self.iou_thresholds), "ranks": list(self.ranks),
                "description": self.describe()}


MOMENTLENS = Protocol("momentlens", strict=False, nms_threshold=0.5)


def metric_names(protocol: Protocol) -> list[str]:
    return [f"R{n}@{m:g}" for n in protocol.ranks for m in protocol.iou_thresholds] + ["mIoU"]


@dataclass
class QueryResult:
    """Per-query outcome: the kept top windows and the best IoU reached within the top n."""

    qid: Any
    vid: str
    query: str
    gt_windows: list[tuple[float, float]]
    top_windows: list[list[float]]  # [start, end, score] after NMS, at most max(ranks)
    iou_top1: float  # IoU of the top-1 window with its best ground-truth window (0 without prediction)
    best_iou: dict[int, float] = field(default_factory=dict)  # n -> max IoU among the top n
    has_prediction: bool = True


@dataclass
class EvaluationResult:
    """Metrics (fractions in [0, 1]) under a protocol, with per-query details."""

    protocol: Protocol
    metrics: dict[str, float]
    num_queries: int
    num_missing: int  # ground-truth queries without any prediction (counted as misses)
    per_query: list[QueryResult]

    def to_dict(self, per_query: bool = False) -> dict:
        out = {"protocol": self.protocol.to_dict(), "num_queries": self.num_queries,
               "num_missing_predictions": self.num_missing, **self.metrics}
        if per_query:
            out["per_query"] = [self._row(r) for r in self.per_query]
        return out

    def _row(self, r: QueryResult) -> dict:
        # times to the millisecond and IoUs to 1e-6: 19.6, not the float sum 19.599999999999998
        row = {"qid": r.qid, "vid": r.vid, "query": r.query,
               "gt": [[round(float(t), 3) for t in w] for w in r.gt_windows],
               "top1": [round(float(t), 3) for t in r.top_windows[0][:2]] if r.top_windows else None,
               "iou_top1": round(float(r.iou_top1), 6)}
        for n in self.protocol.ranks:
            for m in self.protocol.iou_thresholds:
                row[f"R{n}@{m:g}"] = int(_hit(r.best_iou.get(n, 0.0), m, self.protocol.strict))
        return row

    def write_per_query(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write per-query results as CSV or JSON: `fmt` ".csv" or ".json", by default the file's suffix (CSV for
        `.csv`, JSON for anything else)."""
        path = Path(path)
        rows = [self._row(r) for r in self.per_query]
        if (fmt or path.suffix).lower() == ".csv":
            with path.open("w", newline="", encoding="utf-8") as fh:
                cols = list(rows[0].keys()) if rows else ["qid"]
                writer = csv.DictWriter(fh, fieldnames=cols)
                writer.writeheader()
                for row in rows:
                    writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        else:
            path.write_text(json.dumps({"protocol": self.protocol.to_dict(), "per_query": rows}, indent=1))
        return path


def _hit(iou: float | np.ndarray, m: float, strict: bool):
    return iou > m if strict else iou >= m


def recall_metrics(best_iou: dict[int, np.ndarray], iou_top1: np.ndarray, protocol: Protocol) -> dict[str, float]:
    """R@n, IoU=m (fractions) from per-query best IoUs within the top n, and mIoU of the top-1 IoUs.

    # TALL/CTRL R@n, IoU=m: fraction of queries whose top n contain a window with IoU >= m (> m if strict)
    """
    out = {}
    for n in protocol.ranks:
        for m in protocol.iou_thresholds:
            out[f"R{n}@{m:g}"] = float(np.mean(_hit(np.asarray(best_iou[n]), m, protocol.strict)))
    out["mIoU"] = float(np.mean(iou_top1))
    return out


def _ranked(pred: Any) -> np.ndarray:
    """[[s, e, score], ...] (or a prediction dict) -> (N, 3) array; missing scores follow the list order."""
    if isinstance(pred, dict):
        pred = pred.get("pred_relevant_windows", [])
    rows = []
    for rank, w in enumerate(pred):
        rows.append([float(w[0]), float(w[1]), float(w[2]) if len(w) > 2 else -float(rank)])
    return np.array(rows, dtype=float).reshape(-1, 3)


def evaluate_windows(
    queries: Sequence[AnnotatedQuery], predictions: Sequence[Any], protocol: Protocol = MOMENTLENS
) -> EvaluationResult:
    """Score predictions aligned with `queries` (each [[s, e, score], ...], a prediction dict, or None)."""
    if len(queries) != len(predictions):
        raise MomentLensError(f"{len(predictions)} predictions for {len(queries)} queries; they must be aligned.")
    if not queries:
        raise AnnotationError("there are no ground-truth queries to evaluate.")
    top_n = max(protocol.ranks)
    results, missing = [], 0
    for q, pred in zip(queries, predictions):
        ranked = _ranked(pred) if pred is not None else np.zeros((0, 3))
        gt = np.array(q.windows, dtype=float).reshape(-1, 2)
        if len(ranked) == 0 or len(gt) == 0:
            missing += int(len(ranked) == 0)
            results.append(QueryResult(q.qid, q.vid, q.query, list(q.windows), [], 0.0,
                                       {n: 0.0 for n in protocol.ranks}, has_prediction=len(ranked) > 0))
            continue
        if protocol.nms_threshold is not None:
            keep = nms(ranked[:, :2], ranked[:, 2], protocol.nms_threshold, top_k=top_n)
        else:
            keep = np.argsort(-ranked[:, 2], kind="stable")[:top_n]
        top = ranked[keep]
        ious = temporal_iou(top[:, :2], gt).max(axis=1)  # best ground-truth window for each prediction
        best = {n: float(ious[:n].max()) for n in protocol.ranks}
        results.append(QueryResult(q.qid, q.vid, q.query, list(q.windows), top.tolist(), float(ious[0]), best))
    metrics = recall_metrics(
        {n: np.array([r.best_iou[n] for r in results]) for n in protocol.ranks},
        np.array([r.iou_top1 for r in results]), protocol,
    )
    return EvaluationResult(protocol, metrics, len(results), missing, results)


def _norm_query(text: str) -> str:
    return " ".join(str(text).split())


def align_predictions(queries: Sequence[AnnotatedQuery], predictions: Iterable[dict]) -> list[dict | None]:
    """Match prediction dicts to queries: by (vid, query text) when predictions carry both, else by qid.

    Returns a list aligned with `queries` (None where a query has no prediction).
    """
    preds = list(predictions)
    if preds and all("vid" in p and "query" in p for p in preds):
        by_key = {(str(p["vid"]), _norm_query(p["query"])): p for p in preds}
        return [by_key.get((q.vid, _norm_query(q.query))) for q in queries]
    if preds and all("qid" in p for p in preds):
        by_qid = {str(p["qid"]): p for p in preds}
        return [by_qid.get(str(q.qid)) for q in queries]
    raise AnnotationError("predictions must carry `vid` and `query`, or `qid`, to be matched to the ground truth.")
