"""The QVHighlights evaluation protocol (Lei et al., NeurIPS 2021, "QVHighlights"), written from its description.

Moment retrieval (MR):
- R1@m: the *first* predicted window in list order, paired with the ground-truth window of highest IoU;
  a hit when IoU >= m, for m in linspace(0.3, 0.95, 14) rounded to 2 decimals; mIoU of that pair.
- mAP@m: per query, the first 10 predictions sorted by score (stable), greedily matched one-to-one to the
  ground-truth windows at each m in linspace(0.5, 0.95, 10); VOC-style interpolated AP; mean over queries,
  then over thresholds ("average").
- Length buckets by ground-truth window length: short (0, 10], middle (10, 30], long (30, 150]; a query
  enters a bucket with only its windows in that range; "full" uses every query and window.
Highlight detection (HL), from per-clip (2 s) saliency scores of 3 raters, a clip is positive for a rater
when its score >= 2 (Fair), 3 (Good) or 4 (VeryGood):
- HL-mAP: per rater, the mean of the interpolated precisions at the score thresholds that add a positive
  (tied scores form one threshold; the mean is unweighted by recall steps), averaged over raters and queries.
- HL-Hit1: the top-scored clip is positive for at least one rater (max over raters), averaged over queries.
Values are reported x100 and rounded to 2 decimals.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from backends.analysis.windows import temporal_iou
from backends.core.errors import AnnotationError
from backends.evaluation.annotations import QVH_CLIP_SECONDS, AnnotatedQuery

MAP_IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
R1_IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.3, 0.95, 14))
LENGTH_BUCKETS = OrderedDict([("short", (0.0, 10.0)), ("middle", (10.0, 30.0)), ("long", (30.0, 150.0))])
SALIENCY_LEVELS = OrderedDict([("Fair", 2), ("Good", 3), ("VeryGood", 4)])
MAX_PRED_WINDOWS = 10

PROTOCOL = {
    "name": "qvhighlights",
    "strict": False,
    "nms": None,
    "description": "QVHighlights: R1 = first window, IoU >= m vs the best-matching GT window; mAP over the first "
    "10 windows (greedy one-to-one matching, VOC interpolated AP) at IoU 0.5:0.05:0.95; no NMS; "
    "highlight mAP / Hit@1 at saliency >= 2/3/4",
}


def _pct(x: float | np.floating) -> float:
    """x100, rounded to 2 decimals (as the official metrics files)."""
    return round(100.0 * float(x), 2)


def interpolated_ap(hits_in_rank_order: Sequence[float], num_positives: int) -> float:
    """VOC-style interpolated average precision of a ranked list of 0/1 hits.

    # VOC AP: sum over recall steps of (delta recall) x (max precision at any rank at or below it)
    """
    hits = np.asarray(hits_in_rank_order, dtype=float)
    if num_positives <= 0 or hits.size == 0:
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(envelope[hits > 0]) / num_positives)


def _match_hits(pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Greedy one-to-one matching (ActivityNet-style): (len(thresholds), P) 0/1 true-positive flags.

    Predictions are visited in the given order; each takes the unmatched GT window of highest IoU when that
    IoU >= threshold, otherwise it is a false positive.
    """
    hits = np.zeros((len(thresholds), len(pred)))
    if len(pred) == 0 or len(gt) == 0:
        return hits
    iou = temporal_iou(pred, gt)
    # GT windows by descending IoU; among equal IoUs the later window first
    order = np.argsort(iou, axis=1, kind="stable")[:, ::-1]
    for t_idx, thr in enumerate(thresholds):
        taken = np.zeros(len(gt), dtype=bool)
        for p in range(len(pred)):
            for g in order[p]:
                if iou[p, g] < thr:
                    break
                if taken[g]:
                    continue
                taken[g] = True
                hits[t_idx, p] = 1.0
                break
    return hits


def _query_ap(pred_windows: list, gt_windows: list | np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    preds = list(pred_windows)[:MAX_PRED_WINDOWS]
    if not preds:
        return np.zeros(len(thresholds))
    scores = np.array([w[2] for w in preds], dtype=float)
    order = np.argsort(-scores, kind="stable")  # by descending score, list order among ties
    pw = np.array([preds[i][:2] for i in order], dtype=float)
    gw = np.array(gt_windows, dtype=float).reshape(-1, 2)
    hits = _match_hits(pw, gw, thresholds)
    return np.array([interpolated_ap(h, len(gw)) for h in hits])


def _gt_dict(q: AnnotatedQuery | dict) -> dict:
    if isinstance(q, AnnotatedQuery):
        return {"qid": q.qid, "duration": q.duration, "relevant_windows": [list(w) for w in q.windows],
                "relevant_clip_ids": q.relevant_clip_ids, "saliency_scores": q.saliency_scores}
    return q


def _moment_metrics(pairs: list[tuple[dict, dict]]) -> dict:
    """MR-mAP, MR-R1 and MR-mIoU over (ground truth, prediction) pairs."""
    ap_rows, first_ious = [], []
    for gt, pred in pairs:
        windows = pred["pred_relevant_windows"]
        gtw = np.array(gt["relevant_windows"], dtype=float).reshape(-1, 2)
        ap_rows.append(_query_ap(windows, gtw, MAP_IOU_THRESHOLDS))
        if windows and len(gtw):
            ious = temporal_iou(np.array(windows[0][:2], dtype=float), gtw)
            # R1: the first window against the GT window of highest IoU
            first_ious.append(float(ious[int(np.argmax(ious))]))
        else:
            first_ious.append(0.0)
    ap_thr = np.mean(np.array(ap_rows), axis=0)
    m_ap = {str(t): _pct(v) for t, v in zip(MAP_IOU_THRESHOLDS, ap_thr)}
    m_ap["average"] = _pct(np.mean(ap_thr))
    ious = np.array(first_ious)
    r1 = {str(t): _pct(np.mean(ious >= t)) for t in R1_IOU_THRESHOLDS}
    return {"MR-mIoU": _pct(np.mean(ious)), "MR-mAP": m_ap, "MR-R1": r1}


def _in_bucket(pairs: list[tuple[dict, dict]], lo: float, hi: float) -> list[tuple[dict, dict]]:
    """Keep queries with a GT window of length in (lo, hi], with only those windows."""
    out = []
    for gt, pred in pairs:
        kept = [w for w in gt["relevant_windows"] if lo < (w[1] - w[0]) <= hi]
        if kept:
            out.append((dict(gt, relevant_windows=kept), pred))
    return out


def _saliency_matrix(gt: dict) -> np.ndarray:
    """(num_clips, raters) scores over the whole video, 0 outside the relevant clips; num_clips = int(duration / 2)."""
    num_clips = int(float(gt["duration"]) / QVH_CLIP_SECONDS)
    scores = np.array(gt["saliency_scores"], dtype=float)
    full = np.zeros((num_clips, scores.shape[1] if scores.ndim == 2 else 3))
    full[np.array(gt["relevant_clip_ids"], dtype=int)] = scores
    return full


def _saliency_ap(positive: np.ndarray, scores: np.ndarray) -> float:
    """Highlight AP as the QVHighlights metric computes it: each distinct score is one threshold (ties form one
    block); at every threshold that adds a positive, take the interpolated precision (the best precision at
    that recall or higher) and average these values with equal weight (not weighted by the recall step).
    A clip list whose labels are all negative scores 0, all positive 1.
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float(positive.all())
    values, inverse = np.unique(-np.asarray(scores, dtype=float), return_inverse=True)  # thresholds, descending
    tp = np.cumsum(np.bincount(inverse, weights=positive, minlength=len(values)))
    fp = np.cumsum(np.bincount(inverse, weights=~positive, minlength=len(values)))
    last = int(np.searchsorted(tp, tp[-1]))  # thresholds below full recall add nothing
    tp, fp = tp[: last + 1], fp[: last + 1]
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or higher
    adds_positive = np.diff(np.concatenate([[0.0], tp])) > 0
    return float(np.mean(envelope[adds_positive]))


def _highlight_metrics(pairs: list[tuple[dict, dict]]) -> dict:
    mats, preds, tops = [], [], []
    for gt, pred in pairs:
        mat = _saliency_matrix(gt)
        p = np.asarray(pred["pred_saliency_scores"], dtype=float)
        if abs(len(p) - len(mat)) > 1 or len(p) == 0:
            raise AnnotationError(
                f"query {gt['qid']} has {len(p)} predicted saliency scores but its video has {len(mat)} clips of 2 s."
            )
        # Hit@1 takes the top clip of the predicted list as given. For AP, predictions fill a zero vector over
        # the video's int(duration / 2) clips, like the ground truth: a model whose features stop one clip early
        # leaves the last clip at score 0 (this reproduces the official files exactly).
        tops.append(min(int(np.argmax(p)), len(mat) - 1))
        full = np.zeros(len(mat))
        full[: min(len(p), len(mat))] = p[: len(mat)]
        p = full
        mats.append(mat)
        preds.append(p)
    out = {}
    for name, min_score in SALIENCY_LEVELS.items():
        aps, hits = [], []
        for mat, p, top in zip(mats, preds, tops):
            positive = (mat >= min_score).astype(float)
            aps.append([_saliency_ap(positive[:, r], p) for r in range(mat.shape[1])])
            hits.append(positive[top].max())  # Hit@1: top clip positive for any rater
        out[f"HL-min-{name}"] = {"HL-mAP": _pct(np.mean(aps)), "HL-Hit1": _pct(np.mean(hits))}
    return out


def evaluate_qvhighlights(
    ground_truth: Iterable[AnnotatedQuery | dict], predictions: Iterable[dict], require_all: bool = True
) -> dict:
    """Score QVHighlights-format predictions; returns {"protocol", "brief", "full", "short", ..., "HL-min-*"}.

    Queries are matched by `qid`. With `require_all`, the prediction and ground-truth qids must be the same
    set (as in the official evaluation); otherwise only shared qids are scored.
    """
    gts = [_gt_dict(q) for q in ground_truth]
    preds = list(predictions)
    pred_by_qid = {p["qid"]: p for p in preds}
    gt_qids = {g["qid"] for g in gts}
    if require_all and set(pred_by_qid) != gt_qids:
        missing, extra = len(gt_qids - set(pred_by_qid)), len(set(pred_by_qid) - gt_qids)
        raise AnnotationError(
            f"the predictions cover a different set of queries than the ground truth ({missing} missing, {extra} unknown qids)."
        )
    pairs = [(g, pred_by_qid[g["qid"]]) for g in gts if g["qid"] in pred_by_qid]
    if not pairs:
        raise AnnotationError("no prediction matches a ground-truth qid, so there is nothing to evaluate.")
    result: dict[str, Any] = {"protocol": dict(PROTOCOL), "num_queries": len(pairs)}
    brief: dict[str, float] = OrderedDict()
    has_windows = "pred_relevant_windows" in pairs[0][1]
    if has_windows:
        result["full"] = _moment_metrics(pairs)
        for name, (lo, hi) in LENGTH_BUCKETS.items():
            sub = _in_bucket(pairs, lo, hi)
            result[name] = _moment_metrics(sub) if sub else None
        full = result["full"]
        brief["MR-full-R1@0.3"] = full["MR-R1"]["0.3"]
        brief["MR-full-R1@0.5"] = full["MR-R1"]["0.5"]
        brief["MR-full-R1@0.7"] = full["MR-R1"]["0.7"]
        brief["MR-full-mAP"] = full["MR-mAP"]["average"]
        brief["MR-full-mAP@0.5"] = full["MR-mAP"]["0.5"]
        brief["MR-full-mAP@0.75"] = full["MR-mAP"]["0.75"]
        brief["MR-full-mIoU"] = full["MR-mIoU"]
        for name in ("long", "middle", "short"):
            brief[f"MR-{name}-mAP"] = result[name]["MR-mAP"]["average"] if result[name] else 0.0
    has_saliency = "pred_saliency_scores" in pairs[0][1] and all(g.get("saliency_scores") is not None for g, _ in pairs)
    if has_saliency:
        hl = _highlight_metrics(pairs)
        result.update(hl)
        for level, vals in hl.items():
            brief[f"{level}-mAP"] = vals["HL-mAP"]
            brief[f"{level}-Hit1"] = vals["HL-Hit1"]
    result["brief"] = dict(brief)
    return result
