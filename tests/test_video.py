import numpy as np
import pytest

from backends.core.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoNotFoundError,
    VideoTooLongError,
)
from backends.io.video import VideoReader, probe, read_frames, write_video
from tests.media import write_audio_only, write_colour_clip, write_zero_frame_video


def test_realmix_sampled_at_one_fps_by_timestamp(realmix_video):
    reader = VideoReader(realmix_video, fps=1.0, size=(64, 36))
    times = np.array([t for t, _ in reader])
    assert len(times) in (78, 79)
    assert np.all(np.diff(times) > 0)
    # one frame per second; a sample may land up to two 15-fps frames late (B-frames are skipped)
    assert np.allclose(np.diff(times), 1.0, atol=2 / 15 + 1e-6)
    assert np.all(times - np.arange(len(times)) < 2 / 15 + 1e-6)
    assert reader.duration == pytest.approx(78.4, abs=0.07)


@pytest.mark.parametrize("fps, expected", [(0.5, 40), (2.0, 157), (4.0, 314)])
def test_other_sampling_rates(realmix_video, fps, expected):
    times = [t for t, _ in VideoReader(realmix_video, fps=fps, size=(32, 18))]
    assert abs(len(times) - expected) <= 1
    assert np.allclose(np.diff(times), 1 / fps, atol=2 / 15 + 1e-6)


def test_tree_avi_decodes_68_frames_not_the_444_it_claims(opencv_doc_clips):
    tree = opencv_doc_clips["tree"]
    assert probe(tree).declared_frames == 444
    reader = VideoReader(tree, fps=None)
    frames = [f for _, f in reader]
    assert len(frames) == 68
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8


def test_frames_carry_their_timestamps(tmp_path):
    clip = write_colour_clip(tmp_path / "ramp.mp4", seconds=6, fps=10)
    frames, times = read_frames(clip, fps=2.0)
    assert len(frames) == 12
    # the red channel encodes the frame index = 10 * time (H.264 is lossy: a tolerance)
    assert np.allclose(frames[:, 10, 10, 0], times * 10, atol=6)


def test_gzipped_clip_is_read(opencv_doc_clips):
    frames, times = read_frames(opencv_doc_clips["box"], fps=1.0, size=64)
    assert len(frames) >= 14 and min(frames.shape[1:3]) == 64


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="No such video file"):
        probe(tmp_path / "nope.mp4")


def test_non_video_file(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("these are not video bytes\n" * 20)
    with pytest.raises(NotAVideoError, match="not a video file"):
        probe(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.touch()
    with pytest.raises(EmptyVideoError, match="empty"):
        probe(p)


def test_zero_length_video(tmp_path):
    with pytest.raises(EmptyVideoError, match="no video frames"):
        list(VideoReader(write_zero_frame_video(tmp_path / "zero.mp4")))


def test_audio_only(tmp_path):
    with pytest.raises(NoVideoStreamError, match="audio-only"):
        probe(write_audio_only(tmp_path / "sound.m4a"))


def test_truncated_file_with_index_at_end(realmix_video, tmp_path):
    p = tmp_path / "cut.mp4"
    p.write_bytes(realmix_video.read_bytes()[:1_000_000])
    with pytest.raises(CorruptVideoError, match="truncated or corrupt"):
        probe(p)


def test_truncated_file_with_index_first(tmp_path):
    full = write_colour_clip(tmp_path / "full.mp4", seconds=20, fps=10, size=(160, 120))
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptVideoError, match="truncated"):
        list(VideoReader(cut, fps=1.0))


def test_video_longer_than_the_limit(realmix_video):
    with pytest.raises(VideoTooLongError, match="longer than the limit"):
        probe(realmix_video, max_duration=60)


def test_written_video_is_h264_and_readable(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    out = write_video(tmp_path / "x.mp4", frames, fps=4)
    info = probe(out)
    assert info.codec == "h264" and (info.width, info.height) == (64, 48)
    assert len(read_frames(out)[0]) == 8
