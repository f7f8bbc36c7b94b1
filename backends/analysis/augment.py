"""Augmentations of video self-supervised learning: what an encoder is trained to be invariant to.

Pure functions over uint8 RGB frames `(T, H, W, 3)` and a `numpy.random.Generator`:

* CVRL (Qian et al. 2021): temporally consistent spatial augmentation (one draw per clip, applied to
  every frame) and temporal interval sampling with a linearly decreasing gap density;
* FAME (Ding et al. 2022): motion map -> foreground mask -> foreground pasted on another clip;
* temporal gradient (frame differences) and dense Farneback optical flow (MCL/MSCL motion views).

Every sampled quantity is returned as plain JSON-able dicts, so a seed fully determines the output.
`augment_frames` runs one method (or all) on an array (docs/methods/cvrl.md, fame.md, motion-views.md);
`backends.views.augment.augment_view` reads a video and draws it with `backends.figures.augment`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from backends.core.errors import MomentLensError

AUGMENTATIONS = ("crop", "flip", "jitter", "gray", "blur", "solarize")


JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


METHODS = ("cvrl", "fame", "tgrad", "flow", "all")


GAP_HISTOGRAM_DRAWS = 10_000


# ITU-R BT.601 luma weights (the grayscale of torchvision / tf.image.rgb_to_grayscale).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class AugmentError(MomentLensError):
    """Augmentation options or input frames that cannot be used."""


@dataclass(frozen=True)
class CvrlConfig:
    """CVRL augmentation settings; defaults are the paper's Kinetics config (docs/methods/cvrl.md)."""

    crop_size: int = 224  # side of the square output of the random resized crop
    area_range: tuple[float, float] = (0.3, 1.0)  # crop area as a fraction of the frame area
    aspect_range: tuple[float, float] = (0.5, 2.0)  # crop width / height, sampled log-uniformly
    crop_attempts: int = 100  # rejection-sampling tries before falling back to the full frame
    flip_p: float = 0.5  # horizontal flip probability (whole clip)
    jitter_p: float = 0.8  # colour jitter probability
    strength: float = 1.0  # colour jitter strength s: factors ~ U[1-0.8s, 1+0.8s], hue ~ U[-0.2s, 0.2s]
    gray_p: float = 0.2  # grayscale probability
    blur_p: tuple[float, float] = (1.0, 0.1)  # Gaussian blur probability for view 1, view 2
    sigma_range: tuple[float, float] = (0.1, 2.0)  # blur sigma, one per clip
    solarize_p: tuple[float, float] = (0.0, 0.2)  # solarize probability for view 1, view 2
    solarize_threshold: int = 128  # pixels >= threshold are inverted
    num_frames: int = 16  # frames per clip
    stride: int = 2  # temporal stride between a clip's frames
    gap_power: float = 1.0  # p of the gap density (p=1: linearly decreasing)

    def __post_init__(self) -> None:
        lo, hi = self.area_range
        if not 0 < lo <= hi <= 1:
            raise AugmentError(f"crop area range {self.area_range} must satisfy 0 < min <= max <= 1.")
        if not 0 < self.aspect_range[0] <= self.aspect_range[1]:
            raise AugmentError(f"aspect range {self.aspect_range} must satisfy 0 < min <= max.")
        if self.crop_size < 8:
            raise AugmentError(f"crop size {self.crop_size} is too small; use at least 8 pixels.")
        if self.strength < 0:
            raise AugmentError(f"jitter strength {self.strength} must be >= 0.")
        if self.num_frames < 2 or self.stride < 1:
            raise AugmentError("a clip needs at least 2 frames and a stride of at least 1.")
        if self.gap_power <= 0:
            raise AugmentError(f"gap power p={self.gap_power} must be > 0.")

    @property
    def blur_kernel(self) -> int:
        """Blur kernel side: crop_size // 10 made odd (SimCLR/CVRL: radius = k // 2, side 2r + 1)."""
        return (self.crop_size // 10) // 2 * 2 + 1


# --------------------------------------------------------------------------------------------
# CVRL spatial augmentation
# --------------------------------------------------------------------------------------------
@dataclass
class CvrlParams:
    """One CVRL draw for one view; applied identically to every frame of the clip."""

    view: int
    crop_size: int
    crop: dict[str, Any]  # y, x, h, w in source pixels, area fraction, aspect ratio, attempts, fallback
    flip: bool
    jitter: dict[str, Any]  # applied, factors, hue shift, order
    grayscale: bool
    blur: dict[str, Any]  # applied, sigma, kernel
    solarize: dict[str, Any]  # applied, threshold
    enabled: list[str]  # augmentations that were allowed to fire

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _draw_crop(rng: np.random.Generator, height: int, width: int, cfg: CvrlConfig) -> dict[str, Any]:
    """CVRL random resized crop: area in area_range, log-uniform aspect; full frame after failures."""
    area = height * width
    log_lo, log_hi = math.log(cfg.aspect_range[0]), math.log(cfg.aspect_range[1])
    for attempt in range(1, cfg.crop_attempts + 1):
        target = area * rng.uniform(*cfg.area_range)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            return _crop_dict(y, x, h, w, height, width, attempt, fallback=False)
    return _crop_dict(0, 0, height, width, height, width, cfg.crop_attempts, fallback=True)


def _crop_dict(y: int, x: int, h: int, w: int, height: int, width: int, attempts: int, fallback: bool) -> dict[str, Any]:
    return {
        "y": y, "x": x, "h": h, "w": w,
        "area_fraction": round(h * w / (height * width), 6),
        "aspect_ratio": round(w / h, 6),
        "attempts": attempts,
        "fallback": fallback,
    }


def sample_cvrl_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    view: int = 1,
    config: CvrlConfig | None = None,
    *,
    enabled: Collection[str] = AUGMENTATIONS,
    force: bool = False,
) -> CvrlParams:
    """Draw one CVRL augmentation for a (height, width) clip.

    The random numbers are drawn in the same order whatever `enabled` says, so switching one
    augmentation off leaves the others' draws unchanged (a clean ablation). `force=True` applies
    every enabled augmentation with probability 1 (to show its effect on its own).
    """
    cfg = config or CvrlConfig()
    if view not in (1, 2):
        raise AugmentError(f"view must be 1 or 2, not {view!r}.")
    unknown = set(enabled) - set(AUGMENTATIONS)
    if unknown:
        raise AugmentError(
            f"unknown augmentation {sorted(unknown)[0]!r}; available: {', '.join(AUGMENTATIONS)}."
        )

    def fires(name: str, p: float, u: float) -> bool:
        return name in enabled and (force or u < p)

    crop = _draw_crop(rng, height, width, cfg)
    if "crop" not in enabled:
        crop = _crop_dict(0, 0, height, width, height, width, 0, fallback=True)

    flip = fires("flip", cfg.flip_p, rng.random())

    u_jitter = rng.random()
    s = cfg.strength
    factors = rng.uniform(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s, size=3)
    hue = rng.uniform(-0.2 * s, 0.2 * s)
    order = [JITTER_OPS[i] for i in rng.permutation(len(JITTER_OPS))]
    jitter = {
        "applied": fires("jitter", cfg.jitter_p, u_jitter),
        "brightness": round(float(factors[0]), 6),
        "contrast": round(float(factors[1]), 6),
        "saturation": round(float(factors[2]), 6),
        "hue": round(float(hue), 6),
        "order": order,
    }

    grayscale = fires("gray", cfg.gray_p, rng.random())

    u_blur = rng.random()
    sigma = rng.uniform(*cfg.sigma_range)
    blur = {
        "applied": fires("blur", cfg.blur_p[view - 1], u_blur),
        "sigma": round(float(sigma), 6),
        "kernel": cfg.blur_kernel,
    }

    solarize = {
        "applied": fires("solarize", cfg.solarize_p[view - 1], rng.random()) and view == 2,
        "threshold": cfg.solarize_threshold,
    }
    return CvrlParams(
        view=view, crop_size=cfg.crop_size, crop=crop, flip=flip, jitter=jitter,
        grayscale=grayscale, blur=blur, solarize=solarize,
        enabled=[a for a in AUGMENTATIONS if a in enabled],
    )


def _gray(x: np.ndarray) -> np.ndarray:
    """Luma of float RGB frames (..., 3) -> (..., 1)."""
    return (x @ _LUMA)[..., None]


def _adjust(x: np.ndarray, op: str, value: float) -> np.ndarray:
    """One colour-jitter op on float32 RGB in [0, 1] (torchvision semantics), clipped to [0, 1]."""
    if op == "brightness":
        out = x * value
    elif op == "contrast":
        mean = _gray(x).mean(axis=(1, 2, 3), keepdims=True)  # per-frame mean luma
        out = (x - mean) * value + mean
    elif op == "saturation":
        g = _gray(x)
        out = g + (x - g) * value
    elif op == "hue":
        t, h, w, _ = x.shape
        hsv = cv2.cvtColor(np.ascontiguousarray(x.reshape(t * h, w, 3)), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + value * 360.0, 360.0)  # float HSV: hue in degrees
        out = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), dtype=np.float64).reshape(t, h, w, 3)
    else:  # pragma: no cover - guarded by JITTER_OPS
        raise AugmentError(f"unknown jitter op {op!r}; available: {', '.join(JITTER_OPS)}.")
    return np.clip(out, 0.0, 1.0, out=out)


def _resize_stack(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (T, h, w, C) to (T, size, size, C) in one cv2 call (frames stacked as channels)."""
    t, h, w, c = frames.shape
    if h * w > size * size:  # shrinking: INTER_AREA (anti-aliased), which takes <= 4 channels
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    stacked = np.ascontiguousarray(frames.transpose(1, 2, 0, 3).reshape(h, w, t * c))
    out = cv2.resize(stacked, (size, size), interpolation=cv2.INTER_LINEAR)
    return out.reshape(size, size, t, c).transpose(2, 0, 1, 3)


def _blur_stack(frames: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    t, h, w, c = frames.shape
    stacked = np.ascontiguousarray(frames.transpose(1, 2, 0, 3).reshape(h, w, t * c))
    out = cv2.GaussianBlur(stacked, (kernel, kernel), sigma)
    return out.reshape(h, w, t, c).transpose(2, 0, 1, 3)


def apply_cvrl(frames: np.ndarray, params: CvrlParams) -> np.ndarray:
    """Apply one CVRL draw to every frame: crop+resize, flip, jitter, grayscale, blur, solarize."""
    frames = check_frames(frames)
    c = params.crop
    x = frames[:, c["y"]:c["y"] + c["h"], c["x"]:c["x"] + c["w"]]
    x = _resize_stack(x, params.crop_size).astype(np.float32) / 255.0
    if params.flip:
        x = x[:, :, ::-1]
    if params.jitter["applied"]:
        for op in params.jitter["order"]:  # CVRL: the four ops in a random order
            x = _adjust(x, op, params.jitter[op])
    if params.grayscale:
        x = np.repeat(_gray(x), 3, axis=-1)
    if params.blur["applied"]:
        x = _blur_stack(x, params.blur["kernel"], params.blur["sigma"])
    out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    if params.solarize["applied"]:
        thr = params.solarize["threshold"]
        out = np.where(out >= thr, 255 - out, out).astype(np.uint8)
    return np.ascontiguousarray(out)


def apply_cvrl_per_frame(frames: np.ndarray, params: Sequence[CvrlParams]) -> np.ndarray:
    """The 'inconsistent' ablation: frame t gets its own draw params[t]."""
    frames = check_frames(frames)
    if len(params) != len(frames):
        raise AugmentError(f"got {len(params)} per-frame draws for {len(frames)} frames.")
    return np.concatenate([apply_cvrl(frames[t:t + 1], p) for t, p in enumerate(params)])


# --------------------------------------------------------------------------------------------
# CVRL temporal interval sampling
# --------------------------------------------------------------------------------------------
def gap_pdf(k: np.ndarray | float, T: float, p: float = 1.0) -> np.ndarray:
    """CVRL gap density f(k) = (p+1)/(p T) * (1 - (k/T)^p) on [0, T], 0 elsewhere."""
    k = np.asarray(k, dtype=np.float64)
    inside = (k >= 0) & (k <= T)
    x = np.clip(k / T, 0.0, 1.0)
    return np.where(inside, (p + 1) / (p * T) * (1 - x**p), 0.0)


def gap_cdf(k: np.ndarray | float, T: float, p: float = 1.0) -> np.ndarray:
    """CVRL gap CDF F(k) = (-(k^(p+1))/T^(p+1) + (p+1) k/T) / p, clipped to [0, 1]."""
    x = np.clip(np.asarray(k, dtype=np.float64) / T, 0.0, 1.0)
    return (-(x ** (p + 1)) + (p + 1) * x) / p


def sample_gaps(rng: np.random.Generator, T: float, size: int, p: float = 1.0) -> np.ndarray:
    """Draw `size` continuous gaps in [0, T) by inverting the CVRL CDF."""
    u = rng.random(size)
    if p == 1.0:
        # 2x - x^2 = u  =>  x = 1 - sqrt(1 - u)
        return T * (1.0 - np.sqrt(1.0 - u))
    lo, hi = np.zeros(size), np.ones(size)
    for _ in range(60):  # F is increasing on [0, 1]: vectorised bisection to ~1e-18
        mid = (lo + hi) / 2
        below = gap_cdf(mid, 1.0, p) < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return T * (lo + hi) / 2


@dataclass
class TemporalSample:
    """Where CVRL's two clips start in a video of `num_video_frames` frames."""

    num_video_frames: int  # L
    max_gap: int  # T = L - (n-1)*stride; <= 0 means the clips cannot both fit
    gap_drawn: float | None  # continuous gap from the inverse CDF (None when uniform fallback)
    gap: int  # frames between the two starts (start2 - start1 before shuffling)
    starts: list[int]  # [start of clip 1, start of clip 2] after shuffling the pair
    swapped: bool  # whether the pair was shuffled
    uniform_fallback: bool  # L <= (n-1)*stride: both starts drawn uniformly
    num_frames: int
    stride: int

    def clip_indices(self, which: int) -> np.ndarray:
        """Frame indices of clip `which` (0 or 1); clamped to the last frame for short videos."""
        idx = self.starts[which] + self.stride * np.arange(self.num_frames)
        return np.minimum(idx, self.num_video_frames - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_temporal_gap(
    rng: np.random.Generator, L: int, n: int = 16, stride: int = 2, p: float = 1.0
) -> TemporalSample:
    """CVRL temporal interval sampling for a video of L frames and clips of n frames at `stride`."""
    if L < 1:
        raise AugmentError("the video has no frames.")
    T = L - (n - 1) * stride
    if T <= 0:  # the clip does not fit: both starts uniform over the frames there are
        starts = [int(s) for s in rng.integers(0, L, size=2)]
        return TemporalSample(L, T, None, abs(starts[1] - starts[0]), starts, False, True, n, stride)
    k = float(sample_gaps(rng, T, 1, p)[0])
    gap = min(int(k), T - 1)
    start1 = int(rng.integers(0, T - gap))  # start1 ~ U[0, T - k), so start2 = start1 + k < T
    start2 = start1 + gap
    swapped = bool(rng.random() < 0.5)
    starts = [start2, start1] if swapped else [start1, start2]
    return TemporalSample(L, T, round(k, 6), gap, starts, swapped, False, n, stride)


# --------------------------------------------------------------------------------------------
# CVRL: two views of a video
# --------------------------------------------------------------------------------------------
@dataclass
class CvrlResult:
    """Two CVRL views of a video: source clips, augmented clips, draws, and gap statistics."""

    temporal: TemporalSample
    clips: tuple[np.ndarray, np.ndarray]  # the two source clips (n, H, W, 3)
    views: tuple[np.ndarray, np.ndarray]  # the augmented clips (n, S, S, 3)
    params: tuple[list[CvrlParams], list[CvrlParams]]  # one draw per view, or one per frame
    inconsistent: bool  # per-frame draws (ablation) instead of one draw per clip
    gap_draws: np.ndarray  # GAP_HISTOGRAM_DRAWS continuous gaps, for the histogram (empty if no fit)
    config: CvrlConfig

    def to_dict(self) -> dict[str, Any]:
        views = []
        for ps in self.params:
            views.append([p.to_dict() for p in ps] if self.inconsistent else ps[0].to_dict())
        return {
            "temporal": self.temporal.to_dict(),
            "inconsistent": self.inconsistent,
            "views": views,
            "gap_histogram": self.gap_statistics(),
        }

    def gap_statistics(self) -> dict[str, Any]:
        """Size, mean and Kolmogorov-Smirnov test of the gap draws against the analytic CDF."""
        from scipy.stats import kstest  # noqa: PLC0415 - deferred: scipy/scikit-learn take ~1 s to import and the CLI imports this module for its options
        if not self.gap_draws.size:
            return {"draws": 0}

        T, p = self.temporal.max_gap, self.config.gap_power
        ks = kstest(self.gap_draws, lambda k: gap_cdf(k, T, p))
        return {
            "draws": int(self.gap_draws.size),
            "mean": round(float(self.gap_draws.mean()), 4),
            "analytic_mean": round(float(T * (p + 1) / (2 * (p + 2))), 4),
            "ks_statistic": round(float(ks.statistic), 6),
            "ks_pvalue": round(float(ks.pvalue), 6),
        }


def _seed_streams(seed: int, n: int) -> list[np.random.Generator]:
    """Independent generators per purpose, so switching one part off leaves the others' draws."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def cvrl_two_views(
    frames: np.ndarray,
    seed: int,
    *,
    config: CvrlConfig | None = None,
    enabled: Collection[str] = AUGMENTATIONS,
    force: bool = False,
    inconsistent: bool = False,
) -> CvrlResult:
    """CVRL on a video's frames: sample two clips in time, augment each with its own draw."""
    cfg = config or CvrlConfig()
    frames = check_frames(frames)
    rng_time, rng_v1, rng_v2, rng_hist = _seed_streams(seed, 4)
    L, H, W = frames.shape[:3]
    temporal = sample_temporal_gap(rng_time, L, cfg.num_frames, cfg.stride, cfg.gap_power)
    clips = (frames[temporal.clip_indices(0)], frames[temporal.clip_indices(1)])
    views, params = [], []
    for view, rng, clip in ((1, rng_v1, clips[0]), (2, rng_v2, clips[1])):
        if inconsistent:
            ps = [sample_cvrl_params(rng, H, W, view, cfg, enabled=enabled, force=force) for _ in range(len(clip))]
            views.append(apply_cvrl_per_frame(clip, ps))
        else:
            ps = [sample_cvrl_params(rng, H, W, view, cfg, enabled=enabled, force=force)]
            views.append(apply_cvrl(clip, ps[0]))
        params.append(ps)
    gaps = (
        sample_gaps(rng_hist, temporal.max_gap, GAP_HISTOGRAM_DRAWS, cfg.gap_power)
        if temporal.max_gap > 0 else np.zeros(0)
    )
    return CvrlResult(temporal, clips, (views[0], views[1]), (params[0], params[1]), inconsistent, gaps, cfg)


# --------------------------------------------------------------------------------------------
# FAME, temporal gradient, optical flow
# --------------------------------------------------------------------------------------------
@dataclass
class FameResult:
    """FAME foreground-background merging of one clip onto another clip's background."""

    motion_map: np.ndarray  # (H, W) float32 in [0, 1]: blurred, normalised mean frame difference
    score: np.ndarray  # (H, W) float32 in [0, 1]: colour-histogram foreground score
    mask: np.ndarray  # (H, W) bool: the top beta*H*W pixels of the score
    merged: np.ndarray  # (T, H, W, 3) uint8: foreground clip * M + background clip * (1 - M)
    foreground: np.ndarray  # (T, H, W, 3) uint8 source of the foreground
    background: np.ndarray  # (T, H, W, 3) uint8 source of the background
    beta: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "mask_fraction": round(float(self.mask.mean()), 6),
            "motion_map_mean": round(float(self.motion_map.mean()), 4),
            "frames": int(self.merged.shape[0]),
            "size": [int(self.merged.shape[1]), int(self.merged.shape[2])],
        }


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)).astype(np.float32)


def _fame_blur(x: np.ndarray, crop: int) -> np.ndarray:
    k = int(0.1 * crop) // 2 * 2 + 1  # FAME: kernel int(0.1*crop) made odd, sigma = kernel / 3
    return cv2.GaussianBlur(x.astype(np.float32), (k, k), k / 3.0)


def fame_colour_bins(rgb_mean: np.ndarray) -> np.ndarray:
    """FAME colour bin (0..999) of each pixel of a float RGB frame in [0, 255]."""
    hsv = cv2.cvtColor((rgb_mean / 255.0).astype(np.float32), cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0] / 360.0, hsv[..., 1], hsv[..., 2]
    hx = (s * np.cos(2 * np.pi * h) + 1) / 2  # hue/saturation on the unit disc, then to [0, 1]
    hy = (s * np.sin(2 * np.pi * h) + 1) / 2
    bx, by, bv = (np.rint(9 * c + 1).astype(np.int64) - 1 for c in (hx, hy, v))  # round(9x+1) in 1..10
    return (bx * 10 + by) * 10 + bv


def fame(
    frames: np.ndarray,
    other_frames: np.ndarray,
    beta: float = 0.5,
    fg_fraction: float = 0.5,
    bg_fraction: float = 0.1,
) -> FameResult:
    """FAME: paste the moving foreground of `frames` on the background of `other_frames`."""
    frames, other_frames = check_frames(frames), check_frames(other_frames)
    if frames.shape != other_frames.shape:
        raise AugmentError(
            f"FAME needs two clips of the same shape, got {frames.shape} and {other_frames.shape}."
        )
    if len(frames) < 2:
        raise AugmentError("FAME needs a clip of at least 2 frames to see motion.")
    if not 0 < beta < 1:
        raise AugmentError(f"FAME beta {beta} must be in (0, 1).")
    t, h, w, _ = frames.shape
    crop = min(h, w)
    x = frames.astype(np.float32)
    # FAME step 1: D = mean_t sum_c |x_t - x_(t+1)|, blurred and min-max normalised
    motion = np.abs(np.diff(x, axis=0)).sum(axis=-1).mean(axis=0)
    motion = _normalise(_fame_blur(motion, crop))
    # step 2: seeds, top 50% of pixels by D are foreground, bottom 10% background
    order = np.argsort(motion.ravel(), kind="stable")
    n = order.size
    fg_seed = order[n - int(round(fg_fraction * n)):]
    bg_seed = order[: int(round(bg_fraction * n))]
    # step 3: colour bins of the temporal-mean frame
    bins = fame_colour_bins(x.mean(axis=0)).ravel()
    # step 4: foreground probability per colour bin, smoothed background histogram
    p_fg = np.bincount(bins[fg_seed], minlength=1000).astype(np.float64)
    p_bg = np.bincount(bins[bg_seed], minlength=1000).astype(np.float64) + 1.0
    p_fg /= p_fg.sum()
    p_bg /= p_bg.sum()
    score = (p_fg[bins] / (p_fg[bins] + p_bg[bins])).reshape(h, w)
    score = _normalise(_fame_blur(score, crop))
    top = np.argsort(score.ravel(), kind="stable")[n - int(round(beta * n)):]
    flat = np.zeros(n, dtype=bool)
    flat[top] = True
    mask = flat.reshape(h, w)
    # step 5: merge with the other clip's background
    m = mask[None, :, :, None]
    merged = np.where(m, frames, other_frames)
    return FameResult(motion, score, mask, merged, frames, other_frames, beta)


@dataclass
class TemporalGradient:
    """Frame differences x_(t+1) - x_t and a magnitude image for display."""

    diff: np.ndarray  # (T-1, H, W, 3) int16, signed
    images: np.ndarray  # (T-1, H, W, 3) uint8: |diff| scaled by the clip's 99th percentile
    scale: float  # the 99th percentile of |diff| used for display

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": int(self.diff.shape[0]),
            "mean_abs": round(float(np.abs(self.diff).mean()), 4),
            "display_scale": round(self.scale, 4),
        }


def temporal_gradient(frames: np.ndarray) -> TemporalGradient:
    """Temporal gradient (MCL/TCLR motion view): consecutive frame differences."""
    frames = check_frames(frames)
    if len(frames) < 2:
        raise AugmentError("a temporal gradient needs at least 2 frames.")
    diff = np.diff(frames.astype(np.int16), axis=0)
    mag = np.abs(diff)
    scale = max(float(np.percentile(mag, 99)), 1.0)
    images = np.clip(mag * (255.0 / scale), 0, 255).astype(np.uint8)
    return TemporalGradient(diff, images, scale)


@dataclass
class FlowResult:
    """Dense Farneback optical flow between consecutive frames, with HSV colour coding."""

    flow: np.ndarray  # (T-1, H, W, 2) float32, (dx, dy) in pixels
    images: np.ndarray  # (T-1, H, W, 3) uint8 RGB: hue = direction, value = magnitude
    max_magnitude: float  # magnitude mapped to full brightness (the clip's 99th percentile)

    def to_dict(self) -> dict[str, Any]:
        mag = np.linalg.norm(self.flow, axis=-1)
        return {
            "frames": int(self.flow.shape[0]),
            "mean_magnitude": round(float(mag.mean()), 4),
            "display_max_magnitude": round(self.max_magnitude, 4),
        }


def flow_to_rgb(flow: np.ndarray, max_magnitude: float) -> np.ndarray:
    """Colour-code flow (..., H, W, 2): hue = direction, saturation 1, value = magnitude / max."""
    mag = np.linalg.norm(flow, axis=-1)
    ang = np.degrees(np.arctan2(flow[..., 1], flow[..., 0])) % 360.0
    hsv = np.empty((*flow.shape[:-1], 3), dtype=np.uint8)
    hsv[..., 0] = np.rint(ang / 2).astype(np.uint8) % 180  # OpenCV uint8 hue is degrees / 2
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max(max_magnitude, 1e-6) * 255, 0, 255).astype(np.uint8)
    shape = hsv.shape
    rgb = cv2.cvtColor(hsv.reshape(-1, shape[-2], 3), cv2.COLOR_HSV2RGB)
    return np.asarray(rgb).reshape(shape)


def farneback_flow(frames: np.ndarray) -> FlowResult:
    """Dense optical flow (OpenCV Farneback) between consecutive frames, colour coded."""
    frames = check_frames(frames)
    if len(frames) < 2:
        raise AugmentError("optical flow needs at least 2 frames.")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = np.stack([
        # OpenCV allocates the output flow when given None; its stubs do not say so
        cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,  # type: ignore[call-overload]
                                     iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        for a, b in zip(gray[:-1], gray[1:])
    ]).astype(np.float32)
    max_mag = max(float(np.percentile(np.linalg.norm(flow, axis=-1), 99)), 1e-3)
    return FlowResult(flow, flow_to_rgb(flow, max_mag), max_mag)


def flow_colour_wheel(size: int = 64) -> np.ndarray:
    """The legend of `flow_to_rgb`: each pixel's colour for a flow pointing from the centre to it."""
    r = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(r, r)
    wheel = flow_to_rgb(np.stack([xx, yy], axis=-1), 1.0)
    wheel[np.hypot(xx, yy) > 1] = 255
    return wheel


# --------------------------------------------------------------------------------------------
# One entry point over the methods
# --------------------------------------------------------------------------------------------
def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate uint8 RGB frames (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise AugmentError(f"expected RGB frames shaped (T, H, W, 3), got {frames.shape}.")
    if frames.dtype != np.uint8:
        raise AugmentError(f"expected uint8 frames, got {frames.dtype}.")
    return frames


def square_clip(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to size x size (the un-augmented input of FAME and motion views)."""
    frames = check_frames(frames)
    _, h, w, _ = frames.shape
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return _resize_stack(frames[:, y:y + s, x:x + s], size)


@dataclass
class AugmentViewResult:
    """Everything one run of the augmentation view computed; `to_dict()` is the `--json` output."""

    method: str
    seed: int
    video: dict[str, Any]  # name, frames, height, width (no paths, no times)
    config: CvrlConfig
    enabled: list[str]
    force: bool
    cvrl: CvrlResult | None = None
    fame: FameResult | None = None
    tgrad: TemporalGradient | None = None
    flow: FlowResult | None = None
    motion_clip: np.ndarray | None = field(default=None, repr=False)  # square clip for tgrad/flow

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "seed": self.seed,
            "video": self.video,
            "config": asdict(self.config),
            "enabled": self.enabled,
            "force": self.force,
        }
        for name in ("cvrl", "fame", "tgrad", "flow"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict()
        return out


def _methods(method: str) -> tuple[str, ...]:
    if method not in METHODS:
        raise AugmentError(f"unknown method {method!r}; available: {', '.join(METHODS)}.")
    return METHODS[:-1] if method == "all" else (method,)


def augment_frames(
    frames: np.ndarray,
    method: str = "cvrl",
    seed: int = 0,
    *,
    config: CvrlConfig | None = None,
    enabled: Collection[str] = AUGMENTATIONS,
    force: bool = False,
    inconsistent: bool = False,
    background_frames: np.ndarray | None = None,
    video_info: dict[str, Any] | None = None,
) -> AugmentViewResult:
    """Run `method` (cvrl, fame, tgrad, flow or all) on a video's frames, deterministically in `seed`.

    The clips of FAME and the motion views are CVRL's two temporally sampled clips, centre-cropped
    to the crop size; FAME's background is `background_frames` (another video) when given, else
    the second clip.
    """
    frames = check_frames(frames)
    cfg = config or CvrlConfig()
    methods = _methods(method)
    info = dict(video_info or {})
    info.update(frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]))
    result = AugmentViewResult(method, int(seed), info, cfg, [a for a in AUGMENTATIONS if a in enabled], force)
    if "cvrl" in methods:
        result.cvrl = cvrl_two_views(frames, seed, config=cfg, enabled=enabled, force=force, inconsistent=inconsistent)
    if any(m in methods for m in ("fame", "tgrad", "flow")):
        rng_time = _seed_streams(seed, 1)[0]  # the same first stream as cvrl_two_views: same clips
        temporal = sample_temporal_gap(rng_time, len(frames), cfg.num_frames, cfg.stride, cfg.gap_power)
        clip = square_clip(frames[temporal.clip_indices(0)], cfg.crop_size)
        result.motion_clip = clip
        if "fame" in methods:
            if background_frames is not None:
                bg = check_frames(background_frames)
                idx = np.minimum(cfg.stride * np.arange(cfg.num_frames), len(bg) - 1)
                other = square_clip(bg[idx], cfg.crop_size)
            else:
                other = square_clip(frames[temporal.clip_indices(1)], cfg.crop_size)
            result.fame = fame(clip, other)
        if "tgrad" in methods:
            result.tgrad = temporal_gradient(clip)
        if "flow" in methods:
            result.flow = farneback_flow(clip)
    return result
