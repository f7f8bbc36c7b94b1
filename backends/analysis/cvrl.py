"""CVRL (Qian et al. 2021): temporally consistent spatial augmentation and temporal interval sampling.

One draw of crop, flip, colour jitter, grayscale, blur and solarize per clip, applied to every frame of it;
the gap between the two clips' starts drawn from CVRL's decreasing density by inverting its CDF
(docs/methods/cvrl.md). Every draw is returned as a JSON-able dict, so a seed fully determines the views.
The adapter training (`backends.train.adapter`) samples its clip pairs with the same `sample_temporal_gap`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from backends.analysis.clips import AugmentError, check_frames, resize_stack

AUGMENTATIONS = ("crop", "flip", "jitter", "gray", "blur", "solarize")


JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


GAP_HISTOGRAM_DRAWS = 10_000


# ITU-R BT.601 luma weights (the grayscale of torchvision / tf.image.rgb_to_grayscale).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
        if not 0 <= self.strength <= 10:  # also NaN
            raise AugmentError(f"jitter strength {self.strength} must be a number from 0 to 10.")
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
    x = resize_stack(x, params.crop_size).astype(np.float32) / 255.0
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


MAX_SEED = 2**32 - 1  # seeds are 32-bit, as most tools' (and a JSON number holds them exactly)


def seed_streams(seed: int, n: int) -> list[np.random.Generator]:
    """Independent generators per purpose, so switching one part off leaves the others' draws."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise AugmentError(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed}.")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


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
    rng_time, rng_v1, rng_v2, rng_hist = seed_streams(seed, 4)
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
