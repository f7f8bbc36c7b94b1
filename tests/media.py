"""Small bad or synthetic media files written into tmp_path by the tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def write_zero_frame_video(path: Path) -> Path:
    """An mp4 container with a video stream declared and no frame in it."""
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=15)
    s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
    c.start_encoding()
    c.close()
    return path


def write_colour_clip(path: Path, seconds: float, fps: int = 10, size=(64, 48), faststart: bool = True) -> Path:
    """A clip whose colour encodes the frame's timestamp (red channel = frame index)."""
    from backends.io.video import write_video

    n = int(round(seconds * fps))
    frames = (np.zeros((size[1], size[0], 3), np.uint8) + np.array([min(255, i), 80, 160], np.uint8) for i in range(n))
    return write_video(path, frames, fps)
