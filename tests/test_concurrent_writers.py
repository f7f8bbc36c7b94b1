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
from backends.io.atomic import copy_to_free_name, write_bytes_whole
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


def _copies_at_once(tmp_path: Path) -> None:
    """Six copies into one folder under one name at once, while a reader lists the folder: six names, each file
    one whole source, and no name ever visible empty or half-copied (a model list read it then)."""
    blobs = [bytes([i]) * (8 << 20) for i in range(6)]
    sources = []
    for i, blob in enumerate(blobs):
        sources.append(tmp_path / f"src{i}.pt")
        sources[-1].write_bytes(blob)
    folder, seen, stop = tmp_path / "models", set(), threading.Event()

    def watch():
        while not stop.is_set():
            for p in list(folder.glob("model*.pt")) if folder.exists() else []:
                try:
                    seen.add(p.stat().st_size)
                except FileNotFoundError:
                    pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        made, errors = _at_once(6, lambda i: copy_to_free_name(sources[i], folder, "model.pt"))
    finally:
        stop.set()
        watcher.join(30)
    assert errors == []
    assert sorted(p.name for p in made) == ["model-1.pt", "model-2.pt", "model-3.pt", "model-4.pt", "model-5.pt",
                                            "model.pt"]
    assert sorted(p.read_bytes() for p in made) == blobs
    assert seen == {8 << 20}  # every name, whenever listed, held a whole copy
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in made)  # no temporary left


def test_copies_to_free_names_at_once(tmp_path):
    _copies_at_once(tmp_path)


def test_copies_to_free_names_without_hard_links(tmp_path, monkeypatch):
    """A filesystem without hard links (os.link raises): names are claimed empty first, and still never shared."""
    def no_link(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    blobs = [bytes([i]) * 1000 for i in range(4)]
    for i, blob in enumerate(blobs):
        (tmp_path / f"s{i}").write_bytes(blob)
    made, errors = _at_once(4, lambda i: copy_to_free_name(tmp_path / f"s{i}", tmp_path / "m", "a.pt"))
    assert errors == [] and sorted(p.name for p in made) == ["a-1.pt", "a-2.pt", "a-3.pt", "a.pt"]
    assert sorted(p.read_bytes() for p in made) == blobs
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(p.name for p in made)
