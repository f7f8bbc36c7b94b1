"""The web app treated as a stranger's (issue 12): each finding tested through the surface where it was found,
the app API (gradio_client against the launched app) and the CLI, with the production model cache and locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from backends.encoders import base as encoder_base  # noqa: E402
from backends.encoders import cached_encoder, cached_models  # noqa: E402
from backends.models.adapter import AdapterConfig, TemporalAdapter, save_adapter  # noqa: E402

TINY = "conse-tiny-random"
REFUSED = "is not an encoder this server offers"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_thread(fn, timeout: float = 180.0):
    """Run fn in a thread; a deadlock fails the test instead of hanging the suite."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:  # handed to the test
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"the call did not return within {timeout:.0f} s (deadlock?)"
    if "error" in out:
        raise out["error"]
    return out["value"]


class Evil:
    """A pickle that runs a command when loaded without weights_only: it must never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=2)), d / "mine.pt", TINY)
    return d


@pytest.fixture(scope="module")
def served(models):
    from app import build_app

    demo = build_app(encoder=TINY, models_dir=models)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield demo, url
    demo.close()


@pytest.fixture
def client(served):
    return Client(served[1], verbose=False)


# --- 1. an adapter checkpoint no longer hangs the app, the CLI or the widgets ----------------------------
def test_adapter_from_the_models_folder_works_in_the_app(client, models, realmix_video):
    name = f"adapter:{models / 'mine.pt'}"
    info = _in_thread(lambda: client.predict(name, api_name="/encoder_info"))
    assert "adapter:mine.pt@" in info and "32-d" in info
    _, _, table, *_ = _in_thread(lambda: client.predict(handle_file(realmix_video), "a cup", name, 3, 0.5,
                                                          api_name="/retrieve"))
    rows = table["data"] if isinstance(table, dict) else table
    assert len(rows) == 3


def test_adapter_encoder_in_the_widgets(models, realmix_video):
    pytest.importorskip("ipywidgets")
    from widgets import RetrievalPanel

    panel = RetrievalPanel(realmix_video, encoder=TINY)
    panel.encoder.options = [*panel.encoder.options, f"adapter:{models / 'mine.pt'}"]
    panel.encoder.value = f"adapter:{models / 'mine.pt'}"
    panel.query.value = "a hand turning a cup"
    _in_thread(panel.run)
    assert panel.result["encoder"].startswith("adapter:mine.pt@") and panel.result["moments"]


# --- 3. the encoder box: no free server paths, one model per file, a bounded cache ----------------------
def test_encoder_box_refuses_server_paths_whether_they_exist_or_not(client, tmp_path, served):
    outside = tmp_path / "outside.pt"  # a valid adapter, but not in the server's models folder
    save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=1)), outside, TINY)
    before = cached_models()
    messages = []
    for choice in (f"clip:{outside}", f"adapter:{outside}", "clip:/etc/passwd", "adapter:/etc/passwd",
                   "clip:/no/such/file.pt", "clip://etc/passwd", f"adapter:{served[0].momentlens_context.workdir}/x.pt",
                   "adapter:../../../../etc/passwd", "x" * 5000):
        with pytest.raises(AppError, match=REFUSED) as err:
            client.predict(choice, api_name="/encoder_info")
        messages.append(str(err.value).replace(choice[:80], "NAME"))
    assert len(set(messages)) == 1  # the same sentence whether the file exists or not
    with pytest.raises(AppError, match=REFUSED):  # the other events check it too, before any model loads
        client.predict(handle_file(outside), "a cup", f"adapter:{outside}", 3, 0.5, api_name="/retrieve")
    assert cached_models() == before  # nothing was loaded


def test_each_spelling_of_an_offered_file_is_one_model(client, models):
    for spelling in (f"adapter:{models}/./mine.pt", f"adapter:{models}//mine.pt", f"adapter:{models / 'mine.pt'}"):
        assert "adapter:mine.pt@" in client.predict(spelling, api_name="/encoder_info")
    assert sum(name.startswith("adapter:") and name.endswith("mine.pt") for name in cached_models()) == 1


def test_model_cache_is_bounded_by_count(monkeypatch, tmp_path):
    monkeypatch.setattr(encoder_base, "MODEL_CACHE_MAX_MODELS", 2)
    for i in range(3):
        save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=1)), tmp_path / f"a{i}.pt", TINY)
        cached_encoder(f"adapter:{tmp_path / f'a{i}.pt'}", "cpu")
    names = cached_models()
    assert len(names) <= 2 and names[-1].endswith("a2.pt")  # the newest stays, the oldest went


def test_model_cache_is_bounded_by_bytes(monkeypatch):
    monkeypatch.setattr(encoder_base, "MODEL_CACHE_MAX_BYTES", 1)  # any second model is over the bound
    cached_encoder(TINY, "cpu")
    cached_encoder("clip-tiny-random", "cpu")
    assert cached_models() == ["clip-tiny-random"]


# --- 3. checkpoints never run code, in any loader -------------------------------------------------------
@pytest.mark.parametrize("how", ["clip", "adapter", "head", "scaling"])
def test_code_executing_pickles_are_refused_by_the_cli(tmp_path, realmix_video, how):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"kind": "momentlens-temporal-adapter", "state_dict": Evil(marker), "encoder": TINY}, evil)
    cmd = {"clip": ["retrieve", str(realmix_video), "a cup", "--encoder", f"clip:{evil}"],
           "adapter": ["retrieve", str(realmix_video), "a cup", "--encoder", f"adapter:{evil}"],
           "head": ["retrieve", str(realmix_video), "a cup", "--encoder", TINY, "--head", str(evil)],
           "scaling": ["scaling", str(evil)]}[how]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # the override that once made torch.load unsafe
    r = subprocess.run([sys.executable, "-m", "backends", *cmd], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("momentlens: error:") and r.stderr.strip().count("\n") == 0
    assert "not a readable PyTorch checkpoint" in r.stderr
    assert not marker.exists()


def test_code_executing_pickles_are_refused_by_the_app(client, tmp_path, realmix_video):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil(marker)}, evil)
    with pytest.raises(AppError, match="not a readable PyTorch checkpoint"):
        client.predict(handle_file(evil), None, "temporal_scale, scale, alpha or gamma", TINY, api_name="/scaling")
    with pytest.raises(AppError, match="not a readable PyTorch checkpoint"):
        client.predict(handle_file(realmix_video), "a cup", TINY, 3, 0.5, None, None, 1.0, handle_file(evil),
                       api_name="/retrieve")
    assert not marker.exists()


def test_a_torchscript_archive_loads_as_clip_from_a_local_path(tmp_path):
    """OpenAI's CLIP files are TorchScript archives: a local path (the CLI, the CLIP cache, the models folder)
    has its tensors read without running `clip.load`'s unsafe `torch.load`; the app never offers an upload."""
    from backends.encoders.clip_encoder import load_clip_file, tiny_random_clip
    from backends.io.checkpoints import is_torchscript_archive

    model = tiny_random_clip().eval()
    scripted = tmp_path / "tiny_clip_ts.pt"
    torch.jit.save(torch.jit.trace_module(model, {"encode_image": torch.zeros(1, 3, 32, 32)}), str(scripted))
    assert is_torchscript_archive(scripted)
    loaded = load_clip_file(scripted, torch.device("cpu"))
    # build_model stores fp16 weights, which the CPU turns back to fp32 (as clip.load does)
    assert torch.allclose(loaded.visual.proj, model.visual.proj, rtol=1e-3, atol=1e-4)


# --- 2. /evaluate reads only what the server offers -------------------------------------------------------
def test_evaluate_never_reads_a_server_path(client, tmp_path):
    secret = tmp_path / "secrets.txt"
    secret.write_text("DB_PASSWORD=hunter2\n")
    for choice in (str(secret), "../../../etc/passwd", "/etc/passwd", "realmix_dev.json/../../x"):
        with pytest.raises(AppError) as err:
            client.predict(choice, None, TINY, "", None, [], "momentlens", api_name="/evaluate")
        text = str(err.value)  # Gradio's own check of the dropdown, or ours: refused either way, nothing read
        assert ("not in the list of choices" in text or "this server offers" in text) and "hunter2" not in text
    from backends.views.offers import ServerOffers

    with pytest.raises(Exception, match="pick one of the annotation files this server offers"):
        ServerOffers().resolve_annotation(str(secret))


def test_annotation_videos_stay_inside_the_data_folder(client, tmp_path):
    for vid in ("../../../etc/passwd", "/etc/passwd", "../shared/data/realmix_dev.mp4", "..%2F..%2Fetc%2Fpasswd"):
        ann = tmp_path / "ann.json"
        ann.write_text(json.dumps({"video": vid, "duration": 10.0, "queries": [{"query": "a cup", "gt": [0, 5]}]}))
        with pytest.raises(AppError, match="in the server's data folder") as err:
            client.predict(None, handle_file(ann), TINY, "", None, [], "momentlens", api_name="/evaluate")
        assert "/etc" not in str(err.value).split("'")[-1]  # the message names the vid, not what exists


# --- 4. no caller-supplied regular expressions --------------------------------------------------------------
def test_scaling_names_come_from_a_list(client, models):
    with pytest.raises(AppError, match="not in the list of choices|Pick the parameter names from the list"):
        _in_thread(lambda: client.predict(handle_file(models / "mine.pt"), None, "(a|a)*b", TINY, api_name="/scaling"),
                   timeout=60)
    _, summary, data = client.predict(handle_file(models / "mine.pt"), None, "temporal_scale", TINY, api_name="/scaling")
    assert [len(c["layers"]) for c in data["checkpoints"]] == [2]


def test_scaling_pattern_errors_are_one_sentence_in_the_cli(tmp_path, capsys):
    from backends.cli.main import main

    ckpt = save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=2)), tmp_path / "a.pt", TINY)
    assert main(["scaling", str(ckpt), "--pattern", "(unclosed"]) == 2
    err = capsys.readouterr().err
    assert "not a valid regular expression" in err and err.strip().count("\n") == 0


def test_long_parameter_names_are_skipped_quickly():
    from backends.analysis.scaling import find_scale_parameters

    state = {"layers.0." + "a" * 100_000: torch.zeros(1), "layers.1.temporal_scale": torch.ones(1)}
    found = _in_thread(lambda: find_scale_parameters(state), timeout=10)
    assert [p.name for p in found] == ["layers.1.temporal_scale"]


# --- 6. uploads and the work folder are removed -----------------------------------------------------------
def test_session_end_and_close_remove_what_the_app_wrote(tmp_path):
    from app import build_app

    demo = build_app(encoder=TINY, models_dir=tmp_path / "none")
    ctx = demo.momentlens_context
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(b"x")

    class Req:
        session_hash = "abc123"

    ctx.track_upload(Req(), upload)
    export = ctx.session_dir(Req(), "export")
    (export / "moments.json").write_text("{}")
    ctx.end_session(Req())
    assert not upload.exists() and not export.exists()
    assert ctx.workdir.is_dir()
    demo.close()
    assert not ctx.workdir.exists()


def test_launch_limits_upload_size(served):
    demo, _ = served
    assert demo.max_file_size == 2 * 1024**3  # MOMENTLENS_MAX_UPLOAD, 2 GB by default


def test_share_without_auth_warns(monkeypatch, caplog, capsys):
    import logging

    import app.blocks
    from app.cli import register

    calls = []

    class FakeDemo:
        local_url, share_url = "http://127.0.0.1:7860/", None  # offline: no tunnel

        def launch(self, **kwargs):
            calls.append(kwargs)

        def block_thread(self):
            calls.append("served")

        def close(self):
            calls.append("closed")

    monkeypatch.setattr(app.blocks, "build_app", lambda **kw: FakeDemo())
    monkeypatch.setattr("app.cli.signal.signal", lambda *a: None)  # keep pytest's own SIGTERM handling
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["app", "--share"])
    with caplog.at_level(logging.WARNING):
        assert args.func(args) == 0
    assert "anyone with the link can use the app and see the clips uploaded" in caplog.text
    assert calls[-2:] == ["served", "closed"]
    assert "no public link could be created" in capsys.readouterr().out


def test_sigterm_stops_the_app_and_removes_its_work_folder(tmp_path):
    """`momentlens app` as a service manager runs it: SIGTERM ends it and nothing stays in the temp folder."""
    import signal
    import socket
    import tempfile
    import time

    before = set(Path(tempfile.gettempdir()).glob("momentlens-app-*"))
    port = _free_port()
    env = dict(os.environ, MOMENTLENS_MODELS=str(tmp_path / "models"))
    proc = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--encoder", TINY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.5)
        new = set(Path(tempfile.gettempdir()).glob("momentlens-app-*")) - before
        assert len(new) == 1 and next(iter(new)).is_dir()
        # the two start-up lines come just after the port opens: read them first ('' if the app ended; what
        # readline buffered beyond them would be lost to communicate(), which reads the pipe directly)
        first = (proc.stdout.readline() + proc.stdout.readline()) if proc.stdout else ""
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        out = first + out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not next(iter(new)).exists()
    # the start-up lines speak in the command's flags, not in Gradio's Python API ("set `share=True`")
    assert f"running on http://127.0.0.1:{port}" in out and "restart with --share" in out
    assert "share=True" not in out


def test_a_shared_or_exposed_app_cannot_make_the_server_download(client):
    """The panel that downloads weights or writes an uploaded checkpoint into the models folder (the server's
    disk and network) exists only for `momentlens app` on this machine without a share link; build_app's
    default, as a shared server gets it, has no such endpoint."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/weights_get" not in endpoints and "/add_checkpoint" not in endpoints


def test_the_local_cli_app_offers_the_weights_panel(monkeypatch):
    import app.cli as app_cli

    seen = {}

    class Stop(Exception):
        pass

    def fake_build_app(**kwargs):  # stops before serving: only the decision is checked here
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr("app.build_app", fake_build_app)
    for argv, expect in ((["--port", "1"], True), (["--share"], False), (["--host", "0.0.0.0"], False)):
        with pytest.raises(Stop):
            app_cli.main(argv)
        assert seen["local"] is expect, argv


def test_the_local_app_adds_uploaded_checkpoints_without_overwriting(tmp_path, models, realmix_video):
    """`momentlens app` on this machine: "Add a checkpoint" copies it into the models folder and selects it;
    the same name again gets a new name (the first stays as it was); a file no encoder reads is refused."""
    from app import build_app

    folder = tmp_path / "models"
    demo = build_app(encoder=TINY, models_dir=folder, local=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    try:
        c = Client(url, verbose=False)
        note, update = c.predict(handle_file(models / "mine.pt"), api_name="/add_checkpoint")
        choice = update["value"]  # the encoder dropdown: the new checkpoint offered and selected
        first = folder / "mine.pt"
        assert first.read_bytes() == (models / "mine.pt").read_bytes() and "mine.pt" in note
        assert choice == f"adapter:{first.resolve()}" and ["adapter:mine.pt", choice] in update["choices"]
        info = c.predict(choice, api_name="/encoder_info")
        assert "adapter:mine.pt@" in info
        _, _, table, *_ = c.predict(handle_file(realmix_video), "a cup", choice, 3, 0.5, api_name="/retrieve")
        assert len(table["data"]) == 3
        before = first.stat().st_mtime_ns
        _, again = c.predict(handle_file(models / "mine.pt"), api_name="/add_checkpoint")
        assert again["value"].endswith("mine-1.pt") and first.stat().st_mtime_ns == before
        junk = tmp_path / "junk.pt"
        junk.write_bytes(os.urandom(2048))
        with pytest.raises(AppError, match="neither a momentlens temporal adapter or video encoder nor a CLIP checkpoint"):
            c.predict(handle_file(junk), api_name="/add_checkpoint")
        assert sorted(p.name for p in folder.iterdir()) == ["mine-1.pt", "mine.pt"]
    finally:
        demo.close()
