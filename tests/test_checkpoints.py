"""`momentlens checkpoints` and the widgets' encoder list: the models folder's files, each with its kind, its
config and the argument that uses it; a file holding pickled code is described, never executed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from backends.encoders.clip_encoder import tiny_random_clip
from backends.models import grounding as gm
from backends.models.adapter import AdapterConfig, TemporalAdapter, save_adapter
from backends.train import grounding as g

TINY = "conse-tiny-random"


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _models(tmp_path):
    d = tmp_path / "models"
    (d / "sub").mkdir(parents=True)
    save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=2)), d / "mine.pt", TINY)
    g.save_head(gm.GroundingHead(gm.GroundingConfig(feature_dim=32, hidden=4)), d / "sub" / "head.pt", "tiny@1",
                g.TrainSettings(epochs=1), g.TrainLog([0.5]))
    torch.save(tiny_random_clip(seed=2).state_dict(), d / "clip_small.pt")
    torch.save(Evil(tmp_path / "ran"), d / "evil.pt")
    (d / "notes.txt").write_text("not a checkpoint")
    return d


def test_checkpoints_lists_kind_config_and_use(tmp_path):
    d = _models(tmp_path)
    out = subprocess.run([sys.executable, "-m", "backends", "checkpoints", str(d), "--json"], capture_output=True,
                         text=True, timeout=300, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)["checkpoints"]}
    assert set(rows) == {"mine.pt", "head.pt", "clip_small.pt", "evil.pt"}  # notes.txt is not a checkpoint
    assert rows["mine.pt"]["kind"] == "adapter" and rows["mine.pt"]["config"]["layers"] == 2
    assert rows["mine.pt"]["use"] == f"--encoder adapter:{(d / 'mine.pt').resolve()}"
    assert rows["head.pt"]["kind"] == "grounding-head" and rows["head.pt"]["use"].startswith("--head ")
    assert rows["head.pt"]["config"]["feature_dim"] == 32 and rows["head.pt"]["config"]["encoder"] == "tiny@1"
    assert rows["clip_small.pt"]["kind"] == "clip"
    assert rows["evil.pt"]["kind"] is None and rows["evil.pt"]["problem"]
    assert not (tmp_path / "ran").exists()  # described, never unpickled as code
    text = subprocess.run([sys.executable, "-m", "backends", "checkpoints", str(d)], capture_output=True, text=True,
                          timeout=300, check=True).stdout
    assert "4 checkpoint(s)" in text and "use: --encoder adapter:" in text


def test_the_widgets_offer_the_models_folder(tmp_path, monkeypatch):
    d = _models(tmp_path)
    monkeypatch.setenv("MOMENTLENS_MODELS", str(d))
    from widgets.common import encoder_choices

    names = encoder_choices()
    assert f"adapter:{(d / 'mine.pt').resolve()}" in names and f"clip:{(d / 'clip_small.pt').resolve()}" in names
    assert not any("head.pt" in n or "evil.pt" in n for n in names)  # a head is not an encoder; evil is refused
