"""Self-similarity view: TSM formulas against explicit loops, boundary F1, novelty, PSVL events, CLI, figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backends.analysis.similarity import (
    REPNET_TAU,
    SimilarityError,
    atomic_events,
    boundary_f1,
    boundary_strength,
    cosine_tsm,
    detect_boundaries,
    event_proposals,
    repnet_tsm,
    segment_events,
    similarity_from_features,
    union_proposals,
)
from backends.core.errors import WindowError
from backends.views.similarity import frames_at, self_similarity_view


def _block_features(lengths, dim=32, noise=0.05, seed=0):
    """Piecewise-constant features (one random direction per block) plus noise, sampled at 1 fps."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(lengths), dim)) * 3.0
    x = np.concatenate([np.repeat(c[None], n, axis=0) for c, n in zip(centres, lengths)])
    x = x + noise * rng.normal(size=x.shape)
    return x, np.arange(len(x), dtype=float)


# ------------------------------------------------------------------ matrices
def test_repnet_tsm_matches_explicit_double_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 5)) * 2.0
    expected = np.zeros((9, 9))
    for i in range(9):
        logits = [-sum((x[i, d] - x[j, d]) ** 2 for d in range(5)) / 13.544 for j in range(9)]
        z = sum(math.exp(v) for v in logits)
        for j in range(9):
            expected[i, j] = math.exp(logits[j]) / z
    np.testing.assert_allclose(repnet_tsm(x), expected, rtol=1e-10, atol=1e-12)
    assert REPNET_TAU == 13.544


def test_cosine_tsm_matches_explicit_double_loop():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 4))
    expected = np.array([[np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) for b in x] for a in x])
    np.testing.assert_allclose(cosine_tsm(x), expected, atol=1e-12)


def test_repnet_rows_are_distributions_peaked_on_the_frame_itself():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 16)) * 3.0  # large distances: a wrong sign would put the mass far away
    s = repnet_tsm(x)
    np.testing.assert_allclose(s.sum(axis=1), 1.0, atol=1e-12)
    assert (s >= 0).all()
    assert (s.argmax(axis=1) == np.arange(20)).all()
    # the nearest other frame gets more mass than the farthest (negated squared distance)
    d = ((x[:, None] - x[None]) ** 2).sum(-1) + np.eye(20) * 1e9
    assert (s[np.arange(20), d.argmin(1)] > s[np.arange(20), (d - np.eye(20) * 2e9).argmax(1)]).all()


# ------------------------------------------------------------------ F1
def test_boundary_f1_hand_examples():
    perfect = boundary_f1([10.0, 20.0], [10.4, 19.1])
    assert perfect["f1"] == 1.0 and perfect["hits"] == 2
    # two predictions near one true boundary: one-to-one matching counts one hit
    r = boundary_f1([9.8, 10.3, 30.0], [10.0, 20.0])
    assert r["hits"] == 1
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 2)
    assert r["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # tolerance is inclusive, and 1.01 s away is a miss
    assert boundary_f1([11.0], [10.0])["hits"] == 1
    assert boundary_f1([11.01], [10.0])["hits"] == 0
    assert boundary_f1([11.01], [10.0], tolerance=2.0)["hits"] == 1
    # greedy nearest-first would match 10.9 to 11.5 and lose one; the maximum matching keeps both
    assert boundary_f1([10.9, 12.2], [10.0, 11.5])["hits"] == 2
    assert boundary_f1([], [1.0])["f1"] == 0.0 and boundary_f1([1.0], [])["f1"] == 0.0


# ------------------------------------------------------------------ boundaries
def test_boundary_strength_peaks_at_block_changes_and_is_zero_on_constant_input():
    x, t = _block_features([10, 6, 12])
    s = boundary_strength(x, kernel_half_width=3, is_similarity=False)
    assert s[0] == 0.0
    top2 = sorted(np.argsort(s)[-2:])
    assert top2 == [10, 16]  # the first sample of each new block
    np.testing.assert_allclose(s, boundary_strength(cosine_tsm(x), 3))  # features or TSM: same curve
    np.testing.assert_allclose(boundary_strength(np.ones((15, 15)), 4), 0.0, atol=1e-12)
    b = detect_boundaries(s, t, min_distance=2.0)
    np.testing.assert_allclose(b, [9.5, 15.5])  # midpoints between the last and first samples


def test_detect_boundaries_respects_min_distance():
    t = np.arange(20, dtype=float)
    s = np.zeros(20)
    s[[5, 7, 14]] = [1.0, 0.9, 0.8]
    np.testing.assert_allclose(detect_boundaries(s, t, min_distance=1.0, threshold_std=0.5), [4.5, 6.5, 13.5])
    np.testing.assert_allclose(detect_boundaries(s, t, min_distance=3.0, threshold_std=0.5), [4.5, 13.5])
    assert len(detect_boundaries(s, t, min_distance=1.0, threshold_std=2.5)) == 1  # only the tallest clears


# ------------------------------------------------------------------ events
def test_events_are_contiguous_cover_the_timeline_and_follow_blocks():
    x, t = _block_features([8, 5, 9, 6], seed=4)
    events, proposals = event_proposals(x, t, duration=28.0)
    assert events[0, 0] == 0.0 and events[-1, 1] == 28.0
    np.testing.assert_array_equal(events[1:, 0], events[:-1, 1])  # no gaps, no overlaps
    assert (events[:, 1] > events[:, 0]).all()
    np.testing.assert_allclose(events[1:, 0], [7.5, 12.5, 21.5])  # silhouette picks the 4 blocks
    m = len(events)
    assert len(proposals) == m * (m + 1) // 2
    assert [0.0, 28.0] in proposals.tolist() and [7.5, 21.5] in proposals.tolist()
    again_events, again_proposals = event_proposals(x, t, duration=28.0)
    np.testing.assert_array_equal(events, again_events)  # deterministic
    np.testing.assert_array_equal(proposals, again_proposals)


def test_time_column_keeps_repeated_scenes_apart():
    # scene A, then B, then A again: without time, A's two visits share a cluster; with it they are 3 events
    x, t = _block_features([8, 8, 8])
    x[16:] = x[:8] + 0.01
    seg = segment_events(x, t, n_events=3)
    assert len(atomic_events(seg.labels, t)) == 3


def test_atomic_events_and_unions_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 0, 2])
    ev = atomic_events(labels, np.arange(7.0), duration=7.0)
    np.testing.assert_allclose(ev, [[0, 1.5], [1.5, 4.5], [4.5, 5.5], [5.5, 7.0]])
    np.testing.assert_allclose(union_proposals(ev, max_span=2),
                               [[0, 1.5], [0, 4.5], [1.5, 4.5], [1.5, 5.5], [4.5, 5.5], [4.5, 7.0], [5.5, 7.0]])


def test_similarity_from_features_validates_inputs():
    x, t = _block_features([4, 4])
    with pytest.raises(SimilarityError, match="unknown similarity kind"):
        similarity_from_features(x, t, kind="cdist")
    with pytest.raises(SimilarityError, match="at least 2"):
        similarity_from_features(x[:1], t[:1])
    r = similarity_from_features(x, t, kind="cosine", boundaries_from="events")
    np.testing.assert_allclose(r.boundaries, r.events[1:, 0])


# ------------------------------------------------------------------ video, figure, CLI
def test_view_figure_and_frames_on_real_footage(realmix_video):
    result, fig = self_similarity_view(realmix_video, "conse-tiny-random", kind="repnet", fps=0.5)
    n = len(result.times)
    assert result.matrix.shape == (n, n) and n >= 38
    heat = fig.data[0]
    assert heat.type == "heatmap" and "%{x" in heat.hovertemplate and "%{y" in heat.hovertemplate
    assert "%{customdata" in heat.hovertemplate
    assert any(tr.name == "boundary strength" for tr in fig.data)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) >= 3 * len(result.boundaries)
    a, b = frames_at(realmix_video, 5.0, 30.0, size=(64, 36))
    assert a.shape == b.shape == (36, 64, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10  # two different scenes
    with pytest.raises(WindowError, match=r"no frame from 500\.00 s on \(it is 78\.4 s long\)"):
        frames_at(realmix_video, 500.0, 1.0)


def test_cli_json_round_trip(realmix_video, capsys, tmp_path):
    import backends.cli.main as cli

    rc = cli.main(["tsm", str(realmix_video), "--encoder", "conse-tiny-random", "--fps", "0.5", "--json"])
    doc = json.loads(capsys.readouterr().out)
    html = tmp_path / "tsm.html"
    rc_html = cli.main(["tsm", str(realmix_video), "--encoder", "conse-tiny-random", "--fps", "0.5",
                        "--kind", "cosine", "--html", str(html)])
    rc_bad = cli.main(["tsm", str(tmp_path / "missing.mp4"), "--encoder", "conse-tiny-random"])
    assert rc == 0 and rc_html == 0 and rc_bad == 2
    assert {"kind", "times", "matrix", "boundaries", "events", "proposals", "encoder"} <= doc.keys()
    n = len(doc["times"])
    m = np.array(doc["matrix"])
    assert doc["kind"] == "repnet" and m.shape == (n, n)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=n * 5e-5)  # rounded to 4 decimals
    assert all(round(v, 4) == v for v in m.ravel()[:50])
    assert doc["encoder"].startswith("conse-tiny-random")
    ev = np.array(doc["events"])
    assert ev[0, 0] == 0.0 and ev[-1, 1] == pytest.approx(doc["duration"], abs=1e-3)
    assert html.stat().st_size > 1_000_000 and "plotly" in html.read_text()[:5000].lower()


# ------------------------------------------------------------------ real encoder on realmix
@pytest.fixture(scope="session")
def realmix_visual(realmix_video):
    from backends.features import encode_video

    return encode_video(realmix_video, "conse-effnet-minilm", fps=1.0, cache=False)


@pytest.mark.slow
def test_realmix_boundaries_fall_near_the_scene_cuts(realmix_visual, realmix_annotations):
    cuts = [s["start"] for s in realmix_annotations["segments"][1:]]  # the 7 inner cuts
    f = realmix_visual
    novelty = similarity_from_features(f.visual, f.times, f.duration, "repnet")
    events = similarity_from_features(f.visual, f.times, f.duration, "repnet", boundaries_from="events")
    # measured (1 fps, defaults): novelty P 0.857 R 0.857 F1 0.857; k-means event edges P = R = F1 = 1.0
    assert boundary_f1(novelty.boundaries, cuts, tolerance=1.0)["f1"] >= 0.8
    assert boundary_f1(events.boundaries, cuts, tolerance=1.0)["f1"] >= 0.9


def test_too_many_frames_is_a_one_sentence_error():
    t = np.arange(3001, dtype=float) * 0.5
    with pytest.raises(SimilarityError, match="lower --fps"):
        similarity_from_features(np.ones((3001, 2)), t)
