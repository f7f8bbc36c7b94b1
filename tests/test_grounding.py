"""The trained 2D-TAN grounding head: pooling, targets, masking, learning, checkpoints, the features path."""

import numpy as np
import pytest
import torch

from backends.analysis import temporal_map as tm
from backends.analysis.windows import temporal_iou
from backends.cli.main import main
from backends.core.errors import CheckpointError
from backends.models import grounding as gm
from backends.train import grounding as g

D = 16


def test_window_max_pool_equals_brute_force():
    x = torch.randn(2, 3, 7)
    out = gm.window_max_pool(x)
    for a in range(7):
        for b in range(7):
            want = x[:, :, a:b + 1].amax(-1) if a <= b else torch.zeros(2, 3)
            assert torch.allclose(out[:, :, a, b], want)


def test_scaled_iou_targets_by_hand():
    # 4 clips of 1 s, ground truth [1, 3]: cell (1, 2) = [1, 3] -> IoU 1 -> 1; cell (1, 3) = [1, 4] -> IoU 2/3
    # -> (2/3 - 0.5) / 0.5 = 1/3; cell (0, 0) = [0, 1] -> IoU 0 -> 0; invalid cells (a > b) -> 0
    mask = tm.dense_moment_mask(4)
    y = g.scaled_iou_targets(np.array([[1.0, 3.0]]), tm.clip_grid(4.0, 4), mask, 0.5, 1.0)[0]
    assert y[1, 2] == pytest.approx(1.0) and y[1, 3] == pytest.approx(1 / 3) and y[0, 0] == 0.0
    assert y[2, 1] == 0.0 and y[0, 3] == pytest.approx(0.0)  # [0, 4]: IoU 0.5 -> 0


def test_head_scores_only_valid_cells():
    head = gm.GroundingHead(gm.GroundingConfig(feature_dim=D, hidden=8, num_clips=16))
    scores = head.score_map(np.random.rand(16, D), np.random.rand(D))
    assert scores.shape == (16, 16)
    assert np.isfinite(scores).sum() == 136  # dense N = 16: every a <= b
    assert np.all(np.isnan(scores[np.tril_indices(16, -1)]))
    assert np.nanmin(scores) >= 0 and np.nanmax(scores) <= 1
    sparse = gm.GroundingHead(gm.GroundingConfig(feature_dim=D, hidden=8, num_clips=64, mask="sparse"))
    assert np.isfinite(sparse.score_map(np.random.rand(64, D), np.random.rand(D))).sum() == 1104


def _toy(n, seed, num_clips=16):
    """Videos of noise whose ground-truth span carries the query's direction."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(20, 50))
        f = rng.normal(size=(t, D)).astype(np.float32)
        q = rng.normal(size=D).astype(np.float32)
        s = int(rng.integers(0, t - 6))
        e = int(rng.integers(s + 4, min(t, s + 20) + 1))
        f[s:e] += 2.0 * q / np.linalg.norm(q) * np.sqrt(D) / 3
        out.append(g.make_sample(f, np.arange(t, dtype=float), float(t), q, (s, e), num_clips))
    return out


def test_head_learns_the_toy_task():
    train, test = _toy(160, 1), _toy(60, 2)
    head, log = g.train_head(train, gm.GroundingConfig(feature_dim=D, hidden=32),
                             g.TrainSettings(epochs=12, seed=0), device="cpu")
    assert log.losses[-1] < 0.6 * log.losses[0]
    r1 = np.mean([temporal_iou(g.predict_windows(head, s, 1)[0][:2], s.window) >= 0.5 for s in test])
    untrained = gm.GroundingHead(gm.GroundingConfig(feature_dim=D, hidden=32))
    r1_untrained = np.mean([temporal_iou(g.predict_windows(untrained, s, 1)[0][:2], s.window) >= 0.5 for s in test])
    assert r1 > max(0.25, r1_untrained + 0.1), (r1, r1_untrained)


def test_checkpoint_round_trip_and_errors(tmp_path):
    head = gm.GroundingHead(gm.GroundingConfig(feature_dim=D, hidden=8))
    path = g.save_head(head, tmp_path / "head.pt", "toy@1", g.TrainSettings(epochs=1), g.TrainLog([0.5]))
    back = gm.load_head(path, device="cpu")
    x, q = np.random.rand(16, D), np.random.rand(D)
    assert np.allclose(back.score_map(x, q), head.score_map(x, q), equal_nan=True)
    with pytest.raises(CheckpointError, match="trained on 16-d features"):
        gm.load_head(path, expected_dim=384)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a momentlens grounding-head checkpoint"):
        gm.load_head(other)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        gm.load_head(text)


def test_retrieve_with_a_head_of_another_dimension(realmix_video, tmp_path, capsys):
    head = gm.GroundingHead(gm.GroundingConfig(feature_dim=7, hidden=8))
    path = g.save_head(head, tmp_path / "h7.pt", "x", g.TrainSettings(), g.TrainLog())
    rc = main(["retrieve", str(realmix_video), "a cup", "--encoder", "conse-tiny-random", "--head", str(path)])
    assert rc == 2 and "trained on 7-d features" in capsys.readouterr().err


def _charades_layout(tmp_path, n_videos=6):
    """Precomputed features (VID.npy at 1 fps), Charades-STA txt and a Charades csv with durations."""
    rng = np.random.default_rng(0)
    feats_dir = tmp_path / "features"
    feats_dir.mkdir()
    lines, csv_rows = [], ["id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"]
    from backends.encoders import create_encoder

    enc = create_encoder("conse-tiny-random", device="cpu")
    words = ["opens the door", "drinks coffee", "reads a book", "sits on a chair"]
    dirs = enc.encode_text([f"person {w}" for w in words])
    for v in range(n_videos):
        vid = f"V{v:04d}"
        t = 30
        f = rng.normal(scale=0.3, size=(t, enc.dim)).astype(np.float32)
        for k in range(2):
            s = 3 + 12 * k + int(rng.integers(0, 3))
            f[s:s + 8] += dirs[(v + k) % len(words)]
            lines.append(f"{vid} {s:.1f} {s + 8:.1f}##person {words[(v + k) % len(words)]}.")
        np.save(feats_dir / f"{vid}.npy", f)
        csv_rows.append(f'{vid},S,Kitchen,6,6,Yes,"",,"",,{t - 1.5}')
    ann = tmp_path / "charades_sta_train.txt"
    ann.write_text("\n".join(lines) + "\n")
    csv = tmp_path / "Charades_v1_train.csv"
    csv.write_text("\n".join(csv_rows) + "\n")
    return enc, feats_dir, ann, csv


def test_precomputed_features_with_charades_annotations(tmp_path):
    from backends.evaluation.annotations import load_annotations

    enc, feats_dir, ann, csv = _charades_layout(tmp_path)
    queries = load_annotations(ann, durations=[csv])
    samples = g.samples_from_annotations(queries, enc, 16, features_dir=feats_dir)
    assert len(samples) == 12 and samples[0].clip_features.shape == (16, enc.dim)
    assert samples[0].duration == pytest.approx(28.5)  # from the csv, not from the feature count
    head, log = g.train_head(samples, gm.GroundingConfig(feature_dim=enc.dim, hidden=16),
                             g.TrainSettings(epochs=8, batch_size=4), device="cpu")
    assert log.losses[-1] < log.losses[0]


def test_cli_train_grounding_on_features_then_retrieve(tmp_path, realmix_video, capsys):
    enc, feats_dir, ann, csv = _charades_layout(tmp_path)
    out = tmp_path / "head.pt"
    rc = main(["train", "grounding", "--annotations", str(ann), "--features-dir", str(feats_dir),
               "--durations", str(csv), "--encoder", "conse-tiny-random", "--epochs", "2", "--hidden", "16",
               "--out", str(out)])
    assert rc == 0 and out.is_file() and "trained on 12 query/video pairs" in capsys.readouterr().out
    assert main(["retrieve", str(realmix_video), "a cup", "--encoder", "conse-tiny-random", "--head", str(out),
                 "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    starts = [m["start"] for m in doc["moments"]]
    assert len(starts) == 5 and all(0 <= m["start"] < m["end"] <= doc["duration"] + 1e-6 for m in doc["moments"])
    assert [m["score"] for m in doc["moments"]] == sorted((m["score"] for m in doc["moments"]), reverse=True)


def test_training_from_videos_goes_through_the_feature_cache(realmix_video, tmp_path):
    from backends.encoders import create_encoder
    from backends.evaluation.annotations import load_annotations
    from backends.features import encode_video

    enc = create_encoder("conse-tiny-random", device="cpu")
    queries = load_annotations(realmix_video.with_suffix(".json"))
    samples = g.samples_from_annotations(queries, enc, 16, video_dir=realmix_video.parent)
    assert len(samples) == len(queries) and samples[0].clip_features.shape == (16, enc.dim)
    # the same clips as resampling the cached features by hand (the features-folder path uses the same code)
    vf = encode_video(realmix_video, enc, fps=1.0)
    assert vf.from_cache
    clips = tm.resample_to_clips(vf.features, vf.times, tm.clip_grid(samples[0].duration, 16))
    clips /= np.linalg.norm(clips, axis=1, keepdims=True)
    assert np.allclose(samples[0].clip_features, clips, atol=1e-5)
    seen = []
    head, log = g.train_head(samples, gm.GroundingConfig(feature_dim=enc.dim, hidden=8),
                             g.TrainSettings(epochs=2, batch_size=4), device="cpu",
                             progress=lambda frac, text: seen.append((frac, text)))
    assert [f for f, _ in seen] == [0.5, 1.0] and "epoch 2/2" in seen[-1][1] and len(log.losses) == 2
    # predictions are valid cells only: forward windows on the clip grid, inside the video
    edges = set(np.round(tm.clip_grid(samples[0].duration, 16).ravel(), 6))
    for s, e, _ in g.predict_windows(head, samples[0], top_k=5):
        assert s < e <= samples[0].duration + 1e-6 and round(s, 6) in edges and round(e, 6) in edges


def test_training_can_be_stopped():
    from backends.core.errors import CancelledError

    with pytest.raises(CancelledError):
        g.train_head(_toy(8, 3), gm.GroundingConfig(feature_dim=D, hidden=8), g.TrainSettings(epochs=3),
                     device="cpu", should_stop=lambda: True)
