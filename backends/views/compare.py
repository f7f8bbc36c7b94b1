"""Two encoders side by side on one clip and query: both retrievals, and how much they agree.

>>> cmp, figs = compare_view("clip.mp4", "a man rides a bike", ("conse-effnet-minilm", "adapter:my.pt"))
>>> cmp.top1_iou, cmp.mean_best_iou, cmp.saliency_correlation
>>> figs["saliency"], figs["map_a"], figs["map_b"]

Agreement, from the two top-k lists A and B (IoU = temporal overlap / union):
- `top1_iou`: IoU of A's and B's top moments;
- `best_iou_a[i]`: the best IoU of A's moment i with any moment of B (and `best_iou_b` the other way);
  `mean_best_iou` is the mean over both lists (1 when each list's moments all appear in the other);
- `matched`: moments of A that overlap a moment of B at IoU >= 0.5;
- `saliency_correlation`: Pearson's r between the two saliency curves (same sampled frames).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.analysis.windows import temporal_iou
from backends.core.contracts import ProgressFn, StopFn
from backends.core.errors import QueryError
from backends.figures.compare import compare_saliency_figure
from backends.figures.retrieval import temporal_map_figure
from backends.retrieval.engine import RetrievalResult, retrieve

MATCH_IOU = 0.5  # a moment of A "is found by B" when some moment of B overlaps it at least this much


@dataclass
class EncoderComparison:
    """The two retrievals and their agreement (see the module docstring for the definitions)."""

    a: RetrievalResult
    b: RetrievalResult
    iou: np.ndarray  # (len(a.moments), len(b.moments)) IoU of every pair of moments

    @property
    def encoders(self) -> tuple[str, str]:
        return self.a.encoder, self.b.encoder

    @property
    def top1_iou(self) -> float:
        return float(self.iou[0, 0]) if self.iou.size else 0.0

    @property
    def best_iou_a(self) -> np.ndarray:
        return self.iou.max(axis=1) if self.iou.size else np.zeros(len(self.a.moments))

    @property
    def best_iou_b(self) -> np.ndarray:
        return self.iou.max(axis=0) if self.iou.size else np.zeros(len(self.b.moments))

    @property
    def mean_best_iou(self) -> float:
        both = np.concatenate([self.best_iou_a, self.best_iou_b])
        return float(both.mean()) if both.size else 0.0

    @property
    def matched(self) -> int:
        return int((self.best_iou_a >= MATCH_IOU).sum())

    @property
    def saliency_correlation(self) -> float | None:
        """Pearson's r of the two curves on A's frame times (None when either curve is constant)."""
        x = np.asarray(self.a.saliency, float)
        y = np.interp(self.a.saliency_times, self.b.saliency_times, np.asarray(self.b.saliency, float))
        if x.size < 2 or x.std() < 1e-12 or y.std() < 1e-12:
            return None
        return float(np.corrcoef(x, y)[0, 1])

    def summary(self) -> str:
        """One line: the agreement in words."""
        r = self.saliency_correlation
        corr = "n/a (a flat curve)" if r is None else f"{r:+.2f}"
        return (f"top-1 IoU {self.top1_iou:.2f}; {self.matched} of {len(self.a.moments)} moments of A found by B "
                f"(IoU >= {MATCH_IOU}); mean best-match IoU {self.mean_best_iou:.2f}; saliency correlation {corr}")

    def to_dict(self) -> dict:
        r = self.saliency_correlation
        return {"video": self.a.video, "query": self.a.query, "duration": round(float(self.a.duration), 3),
                "encoders": list(self.encoders), "a": self.a.to_dict(), "b": self.b.to_dict(),
                "agreement": {"top1_iou": round(self.top1_iou, 4), "matched": self.matched,
                              "match_iou": MATCH_IOU, "mean_best_iou": round(self.mean_best_iou, 4),
                              "best_iou_a": [round(float(v), 4) for v in self.best_iou_a],
                              "best_iou_b": [round(float(v), 4) for v in self.best_iou_b],
                              "iou": np.round(self.iou, 4).tolist(),
                              "saliency_correlation": None if r is None else round(r, 4)}}


def compare_encoders(video: str | os.PathLike, query: str, encoders: Sequence[Any], *, top_k: int = 5,
                     nms_threshold: float = 0.5, fps: float = 1.0, progress: ProgressFn | None = None,
                     should_stop: StopFn | None = None) -> EncoderComparison:
    """Retrieve `query` in `video` with each of two encoders (names or Encoder objects; each video encoded
    once per encoder through the feature cache) and measure their agreement."""
    if len(encoders) != 2:
        raise QueryError(f"compare exactly two encoders, got {len(encoders)}.")
    a_enc, b_enc = encoders
    if isinstance(a_enc, str) and a_enc == b_enc:
        raise QueryError(f"A and B are the same encoder ({a_enc!r}); pick two different encoders to compare.")
    results = []
    for i, enc in enumerate(encoders):
        part = None if progress is None else _part(progress, i, len(encoders))
        results.append(retrieve(video, query, encoder=enc, top_k=top_k, nms_threshold=nms_threshold, fps=fps,
                                progress=part, should_stop=should_stop))
    a, b = results
    wa = np.array([[m.start, m.end] for m in a.moments], float).reshape(-1, 2)
    wb = np.array([[m.start, m.end] for m in b.moments], float).reshape(-1, 2)
    iou = temporal_iou(wa, wb) if len(wa) and len(wb) else np.zeros((len(wa), len(wb)))
    return EncoderComparison(a, b, np.asarray(iou, float))


def compare_view(video: str | os.PathLike, query: str, encoders: Sequence[Any], *, top_k: int = 5,
                 nms_threshold: float = 0.5, fps: float = 1.0, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None) -> tuple[EncoderComparison, dict[str, Any]]:
    """`compare_encoders` and its figures: {"saliency": both curves, "map_a", "map_b": each 2D map}."""
    cmp = compare_encoders(video, query, encoders, top_k=top_k, nms_threshold=nms_threshold, fps=fps,
                           progress=progress, should_stop=should_stop)
    labels = [cmp.a.encoder, cmp.b.encoder]
    figures = {"saliency": compare_saliency_figure([cmp.a, cmp.b], labels),
               "map_a": temporal_map_figure(cmp.a.map, cmp.a.moments, title=f"A: {_short(labels[0])}, N = {cmp.a.map.num_clips}"),
               "map_b": temporal_map_figure(cmp.b.map, cmp.b.moments, title=f"B: {_short(labels[1])}, N = {cmp.b.map.num_clips}")}
    return cmp, figures


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _part(progress: ProgressFn, i: int, n: int) -> ProgressFn:
    """Progress of step i of n as a slice of the whole (encoder A: 0-50 %, encoder B: 50-100 %)."""
    def report(frac: float, text: str) -> None:
        progress((i + max(0.0, min(1.0, frac))) / n, f"encoder {'AB'[i] if n == 2 else i + 1}: {text}")
    return report
