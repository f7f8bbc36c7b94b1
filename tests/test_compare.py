"""Two encoders side by side (backends.views.compare, `momentlens compare`): the agreement numbers against
independent computations, and the identity case."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backends.core.errors import QueryError
from backends.encoders import cached_encoder
from backends.figures.compare import rescale
from backends.retrieval.engine import retrieve
from backends.views.compare import compare_encoders, compare_view

TINY = "conse-tiny-random"
OTHER = "clip-tiny-random"
QUERY = "people riding bicycles"


def _iou(a, b) -> float:
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = (a.end - a.start) + (b.end - b.start) - inter
    return inter / union if union > 0 else 0.0


def test_agreement_matches_a_pair_by_pair_computation(realmix_video):
    cmp = compare_encoders(realmix_video, QUERY, (TINY, OTHER), top_k=5)
    a = retrieve(realmix_video, QUERY, encoder=TINY, top_k=5)
    b = retrieve(realmix_video, QUERY, encoder=OTHER, top_k=5)
    assert [(m.start, m.end) for m in cmp.a.moments] == [(m.start, m.end) for m in a.moments]
    assert [(m.start, m.end) for m in cmp.b.moments] == [(m.start, m.end) for m in b.moments]
    pair = np.array([[_iou(x, y) for y in b.moments] for x in a.moments])
    np.testing.assert_allclose(cmp.iou, pair, atol=1e-9)
    assert cmp.top1_iou == pytest.approx(_iou(a.moments[0], b.moments[0]))
    best_a, best_b = pair.max(axis=1), pair.max(axis=0)
    assert cmp.matched == int(sum(v >= 0.5 for v in best_a))
    assert cmp.mean_best_iou == pytest.approx(float(np.mean(np.r_[best_a, best_b])))
    # Pearson r by its definition (same frame times: both encoders sample at 1 fps)
    x, y = a.saliency - a.saliency.mean(), b.saliency - b.saliency.mean()
    assert cmp.saliency_correlation == pytest.approx(float((x @ y) / np.sqrt((x @ x) * (y @ y))), abs=1e-9)


def test_an_encoder_agrees_fully_with_itself(realmix_video):
    enc = cached_encoder(TINY)  # the same model twice (names must differ; objects may be equal)
    cmp = compare_encoders(realmix_video, QUERY, (enc, enc), top_k=4)
    assert cmp.top1_iou == pytest.approx(1.0)
    assert cmp.mean_best_iou == pytest.approx(1.0)
    assert cmp.matched == len(cmp.a.moments)
    assert cmp.saliency_correlation == pytest.approx(1.0)


def test_compare_refuses_one_encoder_twice_and_wrong_counts(realmix_video):
    with pytest.raises(QueryError, match="two different encoders"):
        compare_encoders(realmix_video, QUERY, (TINY, TINY))
    with pytest.raises(QueryError, match="exactly two"):
        compare_encoders(realmix_video, QUERY, (TINY,))


def test_compare_view_figures_show_both_curves_rescaled(realmix_video):
    cmp, figs = compare_view(realmix_video, QUERY, (TINY, OTHER), top_k=3)
    curves = [t for t in figs["saliency"].data if t.type == "scatter"]
    assert len(curves) == 2
    np.testing.assert_allclose(curves[0].y, rescale(cmp.a.saliency))
    np.testing.assert_allclose(curves[1].customdata, cmp.b.saliency)  # hover shows the raw cosine
    assert min(curves[1].y) == 0.0 and max(curves[1].y) == 1.0
    assert np.allclose(rescale(np.ones(5)), 0.5)  # a flat curve sits in the middle, not a division by zero
    assert figs["map_a"].layout.title.text.startswith("A: ") and figs["map_b"].layout.title.text.startswith("B: ")


def test_compare_cli_json(realmix_video):
    out = subprocess.run([sys.executable, "-m", "backends", "compare", str(realmix_video), QUERY,
                          "--encoders", TINY, OTHER, "--top-k", "3", "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    doc = json.loads(out.stdout)
    assert doc["encoders"][0].startswith(TINY) and doc["encoders"][1].startswith(OTHER)
    assert len(doc["a"]["moments"]) == 3 and len(doc["b"]["moments"]) == 3
    agree = doc["agreement"]
    assert np.array(agree["iou"]).shape == (3, 3)
    assert agree["top1_iou"] == pytest.approx(agree["iou"][0][0], abs=1e-4)
    assert agree["best_iou_a"] == pytest.approx(np.max(agree["iou"], axis=1).tolist(), abs=1e-4)
