import json
import subprocess
import sys

import numpy as np
import pytest

from backends.cli.main import main
from backends.core.errors import CancelledError, MomentLensError
from backends.features import encode_video
from backends.io.cache import FeatureCache
from tests.media import write_colour_clip


@pytest.fixture
def clip(tmp_path):
    return write_colour_clip(tmp_path / "c.mp4", seconds=5, fps=10, size=(96, 64))


def test_second_encode_is_served_from_the_cache(clip, tmp_path):
    store = FeatureCache(tmp_path / "cache")
    a = encode_video(clip, "conse-tiny-random", fps=2.0, cache=store)
    b = encode_video(clip, "conse-tiny-random", fps=2.0, cache=store)
    assert not a.from_cache and b.from_cache
    assert np.array_equal(a.features, b.features) and np.array_equal(a.times, b.times)
    assert b.duration == pytest.approx(5.0, abs=0.11)
    # another fps is another entry
    c = encode_video(clip, "conse-tiny-random", fps=1.0, cache=store)
    assert not c.from_cache and len(c) == 5 and len(store.entries()) == 2


def test_cache_key_follows_content_not_path(clip, tmp_path):
    store = FeatureCache(tmp_path / "cache")
    encode_video(clip, "conse-tiny-random", cache=store)
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clip.read_bytes())
    assert encode_video(copy, "conse-tiny-random", cache=store).from_cache


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes"])
def test_damaged_entry_is_detected_and_recomputed(clip, tmp_path, damage):
    store = FeatureCache(tmp_path / "cache")
    a = encode_video(clip, "conse-tiny-random", cache=store)
    (entry,) = store.entries()
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    else:
        mid = len(data) // 2  # inside the features array
        data[mid : mid + 8] = bytes(8)
        entry.write_bytes(bytes(data))
    b = encode_video(clip, "conse-tiny-random", cache=store)
    assert not b.from_cache and np.allclose(a.features, b.features)
    assert encode_video(clip, "conse-tiny-random", cache=store).from_cache


def test_cancel_leaves_no_partial_entry(clip, tmp_path):
    store = FeatureCache(tmp_path / "cache")
    with pytest.raises(CancelledError, match="cancelled"):
        encode_video(clip, "conse-tiny-random", fps=4.0, cache=store, should_stop=lambda: True)
    assert store.entries() == [] and not list(store.dir.glob(".tmp-*"))


def test_bad_video_leaves_no_cache_entry(tmp_path):
    store = FeatureCache(tmp_path / "cache")
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    with pytest.raises(MomentLensError):
        encode_video(bad, "conse-tiny-random", cache=store)
    assert store.entries() == []


def test_cli_encode_writes_npz_and_reports_cache(realmix_video, tmp_path, capsys):
    out = tmp_path / "f.npz"
    args = ["encode", str(realmix_video), "--fps", "1", "--out", str(out), "--encoder", "conse-tiny-random"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "computed" in first
    z = np.load(out)
    assert z["features"].shape[0] in (78, 79) and z["features"].dtype == np.float32
    assert np.allclose(np.linalg.norm(z["features"], axis=1), 1, atol=1e-5)
    assert np.all(np.diff(z["times"]) > 0)
    assert main(args + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["from_cache"] is True and summary["frames"] == z["features"].shape[0]


def test_cli_cache_clear_deletes_features_and_keeps_the_users_library_and_models(clip, capsys, monkeypatch):
    from backends.core.paths import cache_dir, models_dir
    from backends.retrieval.library import Library, library_dir

    monkeypatch.delenv("MOMENTLENS_LIBRARY", raising=False)  # their defaults: folders inside the cache root
    monkeypatch.delenv("MOMENTLENS_MODELS", raising=False)

    encode_video(clip, "conse-tiny-random")
    Library(library_dir()).add([clip], encoder="conse-tiny-random", show_progress=False)  # the default library
    models_dir().mkdir(parents=True, exist_ok=True)
    (models_dir() / "adapter.pt").write_bytes(b"a checkpoint the user trained")
    assert library_dir().parent == cache_dir() and models_dir().parent == cache_dir()  # both inside the cache root
    assert main(["cache", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 1 and info["bytes"] > 0 and {"library", "models"} <= set(info["kept"])
    assert main(["cache", "clear"]) == 0
    assert "kept: library, models" in capsys.readouterr().out
    main(["cache", "--json"])
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    assert (models_dir() / "adapter.pt").read_bytes() == b"a checkpoint the user trained"
    assert len(Library(library_dir()).videos()) == 1


def test_cli_errors_are_one_sentence_without_traceback(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_text("hello")
    r = subprocess.run([sys.executable, "-m", "backends", "encode", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("momentlens: error:") and r.stderr.strip().count("\n") == 0
    r = subprocess.run([sys.executable, "-m", "backends", "--debug", "encode", str(bad)], capture_output=True, text=True)
    assert "Traceback" in r.stderr


def test_cli_encoders_lists_registry(capsys):
    assert main(["encoders", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {r["name"]: r["available"] for r in out["encoders"]}
    assert names["conse-effnet-minilm"] is True and names["clip-tiny-random"] is True
    assert "clip:ViT-B/32" in names
