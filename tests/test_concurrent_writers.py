"""Several writers of one file at once, as the app's users and the widgets' threads are: each gets a temporary
name of its own (backends.io.atomic), so none renames another's half-written file away nor finds its own gone.
Each case failed in most episodes before (FileNotFoundError on a shared `.part` name; two users told the same
checkpoint name, one file silently replacing the other)."""

from __future__ import annotations

import filecmp
import os
import threading
from pathlib import Path

from app.common import AppContext
from backends.io.atomic import claim_free_name, write_bytes_whole
from backends.models.adapter import AdapterConfig, TemporalAdapter, save_adapter
from backends.views.offers import ServerOffers
from widgets.common import save_upload


def _at_once(n: int, fn) -> tuple[list, list[str]]:
    """fn(i) on n threads released together: (results, errors)."""
    barrier, results, errors = threading.Barrier(n), [], []

    def one(i):
        barrier.wait()
        try:
            results.append(fn(i))
        except Exception as err:  # any failure is the bug
            errors.append(repr(err))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, errors


def test_users_opening_one_clip_at_once_all_get_it(tmp_path, opencv_doc_clips):
    clip = opencv_doc_clips["vtest"]  # 8 MB: copying takes long enough to overlap
    for episode in range(6):
        ctx = AppContext(encoder="conse-tiny-random", video=None, workdir=tmp_path / f"work{episode}")
        served, errors = _at_once(3, lambda _i, ctx=ctx: ctx.servable(clip))
        assert errors == [] and len(set(served)) == 1 and filecmp.cmp(served[0], clip, shallow=False)
        assert [p.name for p in Path(served[0]).parent.iterdir()] == [clip.name]  # no temporary file left


def test_one_upload_saved_by_several_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))
    content = os.urandom(8 << 20)
    for episode in range(6):
        saved, errors = _at_once(3, lambda _i, e=episode: save_upload(f"clip{e}.mp4", content))
        assert errors == [] and len(set(saved)) == 1 and saved[0].read_bytes() == content


def test_checkpoints_added_under_one_name_at_once_keep_their_own_files(tmp_path):
    uploads = []
    for i in range(3):  # three different adapters, each uploaded as mine.pt
        path = tmp_path / f"upload{i}" / "mine.pt"
        save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=1 + i)), path, "conse-tiny-random")
        uploads.append(path)
    for episode in range(5):
        offers = ServerOffers(models=tmp_path / f"models{episode}", data=None)
        names, errors = _at_once(3, lambda i, o=offers: o.add_model(uploads[i], "mine.pt"))
        assert errors == [] and len(set(names)) == 3  # three names, none replacing another
        files = sorted((tmp_path / f"models{episode}").iterdir())
        assert [f.name for f in files] == ["mine-1.pt", "mine-2.pt", "mine.pt"]
        assert sorted(f.read_bytes() for f in files) == sorted(u.read_bytes() for u in uploads)


def test_atomic_writes_and_free_names(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    blobs = [bytes([i]) * (4 << 20) for i in range(4)]
    _, errors = _at_once(4, lambda i: write_bytes_whole(target, blobs[i]))
    assert errors == [] and target.read_bytes() in blobs  # one writer's whole file, never a mix
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
    claimed, errors = _at_once(6, lambda _i: claim_free_name(tmp_path, "model.pt"))
    assert errors == [] and sorted(p.name for p in claimed) == ["model-1.pt", "model-2.pt", "model-3.pt",
                                                                "model-4.pt", "model-5.pt", "model.pt"]
