"""Text-conditioned Grad-CAM: where in each frame the encoder finds what the query names.

Grad-CAM (Selvaraju et al. 2017) through the `grad-cam` package; the target is the cosine similarity
between a frame's joint embedding (`encoder.image_model()`) and the query's text embedding, so the map
shows the regions that raise the frame-query score. Works for any `Encoder` (2-D maps) and for video
encoders whose `preprocess` returns a clip (1, 3, T, S, S) (5-D activations, maps per frame).
The math lives here (docs/methods/gradcam.md); `backends.views.gradcam` reads the frames and runs it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backends.analysis.gradcam_options import FITS, METHODS
from backends.core.device import MODEL_LOCK
from backends.core.errors import MomentLensError

log = logging.getLogger(__name__)


class GradCamError(MomentLensError):
    """Grad-CAM cannot run with these inputs (bad method, no frames, no gradient reaching the layer)."""


def _cam_class(method: str):
    # deferred: pytorch_grad_cam imports torchvision (~2 s), which the app's start and the CLI need nothing of
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus  # noqa: PLC0415

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}
    if method not in classes:
        raise GradCamError(f"unknown Grad-CAM method {method!r}; choose one of {', '.join(METHODS)}.")
    return classes[method]


class CosineToText:
    """grad-cam target: cosine similarity between one output embedding and a fixed text embedding."""

    def __init__(self, text_embedding: torch.Tensor):
        self.text = text_embedding

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        text = self.text.to(device=output.device, dtype=output.dtype)
        return F.cosine_similarity(output.reshape(-1), text.reshape(-1), dim=0)


class ProjectionOn:
    """grad-cam target: the output embedding's projection on a fixed unit vector (output . e / |e|). For an
    encoder without a text side, e is the clip's own embedding: the cosine would sit at its maximum 1 there,
    where its gradient vanishes; the projection's gradient shows what makes the embedding point that way."""

    def __init__(self, direction: torch.Tensor):
        self.direction = F.normalize(direction.reshape(-1).float(), dim=0)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output.reshape(-1) * self.direction.to(device=output.device, dtype=output.dtype)).sum()


@contextlib.contextmanager
def _frozen_parameters(model: torch.nn.Module):
    """Gradients flow to the input only: the (shared, read-only) encoder's weights get no `.grad`."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def query_cam(
    model: torch.nn.Module,
    target_layer: torch.nn.Module,
    inputs: torch.Tensor,
    text_embedding: np.ndarray | torch.Tensor | None,
    method: str = "gradcam",
    *,
    reshape_transform: Callable | None = None,
    target: str = "cosine",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps of `model(inputs)`'s cosine similarity to `text_embedding` at `target_layer`.

    inputs (B,3,S,S) give maps (B,S,S); clips (B,3,T,S,S) give (B,T,S,S); each map is min-max scaled
    to [0, 1]. Also returns the B cosine scores (None without a text embedding). `target="projection"` weighs
    the embedding's projection on `text_embedding` instead of its cosine (ProjectionOn). Runs with autograd on,
    whatever the caller's grad mode; the hooks are removed on return. Holds MODEL_LOCK meanwhile: its hooks see
    its own pass only, not another thread's.
    """
    cam_class = _cam_class(method)
    needs_text = method != "eigencam"
    if text_embedding is None and needs_text:
        raise GradCamError(f"{method} needs a text query; EigenCAM alone works without one.")
    text = None if text_embedding is None else torch.as_tensor(np.asarray(text_embedding, np.float32)).reshape(-1)
    with MODEL_LOCK, torch.inference_mode(False), torch.enable_grad(), _frozen_parameters(model):
        x = inputs.detach().clone().requires_grad_(True)  # gradients reach the layer through the input
        target_cls = ProjectionOn if target == "projection" else CosineToText
        targets: list[Any] = [target_cls(text)] * len(x) if text is not None else []
        with cam_class(model=model, target_layers=[target_layer], reshape_transform=reshape_transform) as cam:
            if not needs_text:
                targets = [lambda out: out.sum()] * len(x)  # unused by EigenCAM, avoids argmax targets
            try:
                maps = cam(input_tensor=x, targets=targets)
            except (IndexError, ValueError) as err:  # no activation/gradient captured at the layer
                raise GradCamError(
                    f"Grad-CAM captured nothing at the target layer ({err}); the encoder's target_layer() "
                    "must be on the path from the input to its embedding."
                ) from err
            outputs = cam.outputs.detach().float()
        scores = None
        if text is not None:
            scores = F.cosine_similarity(outputs, text.to(outputs.device)[None], dim=-1).cpu().numpy()
    maps = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0)
    return np.clip(maps, 0.0, 1.0), scores


def frames_to_input(frames: np.ndarray, size: int, fit: str, encoder_fit: str = "crop") -> tuple[np.ndarray, dict[str, int]]:
    """Frames (T,H,W,3) -> what goes to `encoder.preprocess`, and where the model's square lies in the frame.

    'squash' resizes the whole frame to size x size (every pixel gets a heat value, aspect not kept);
    'crop' keeps the frame, so the encoder's own input fit applies (what retrieval features see): its
    shorter-side resize and centre crop (outside the crop the map is 0), or, for an encoder whose
    `input_fit` is 'squash', the whole frame.
    """
    if fit not in FITS:
        raise GradCamError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}.")
    h, w = frames.shape[1:3]
    if fit == "crop" and encoder_fit == "squash":  # the encoder resizes the whole frame itself
        return frames, {"canvas_h": size, "canvas_w": size, "top": 0, "left": 0, "size": size}
    if fit == "squash":
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
        squashed = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
        return squashed, {"canvas_h": size, "canvas_w": size, "top": 0, "left": 0, "size": size}
    scale = size / min(h, w)  # same geometry as the encoders' resize + centre crop
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return frames, {"canvas_h": nh, "canvas_w": nw, "top": (nh - size) // 2, "left": (nw - size) // 2, "size": size}


def map_to_frame(cam: np.ndarray, geometry: dict[str, int], height: int, width: int) -> np.ndarray:
    """A map on the model's square input -> a map with the frame's (height, width), in [0, 1]."""
    s = geometry["size"]
    cam = cam if cam.shape == (s, s) else cv2.resize(cam, (s, s), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((geometry["canvas_h"], geometry["canvas_w"]), np.float32)
    canvas[geometry["top"] : geometry["top"] + s, geometry["left"] : geometry["left"] + s] = cam
    out = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


@dataclass
class GradCamResult:
    """Per-frame query-conditioned heat maps of a video."""

    frames: np.ndarray  # (K, H, W, 3) uint8 RGB frames at `times`
    maps: np.ndarray  # (K, H, W) float32 heat in [0, 1], the frames' shape
    times: np.ndarray  # (K,) seconds
    query: str
    method: str  # gradcam | gradcam++ | eigencam
    encoder_id: str
    scores: np.ndarray | None = None  # (K,) cosine similarity of each frame to the query
    fit: str = "squash"  # how frames became the square model input
    video: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def overlays(self, opacity: float = 0.5) -> np.ndarray:
        """(K,H,W,3) uint8: the jet-coloured maps blended over the frames with `opacity`."""
        return np.stack([overlay_heatmap(f, m, opacity) for f, m in zip(self.frames, self.maps)])

    def summary(self) -> list[dict[str, Any]]:
        """Per-frame statistics (no arrays): peak, heat-weighted centroid, mean heat, hot area, score."""
        rows = []
        for i, (m, t) in enumerate(zip(self.maps, self.times)):
            h, w = m.shape
            py, px = (int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))
            mass = float(m.sum())
            ys, xs = np.mgrid[0:h, 0:w]
            cy = float((m * ys).sum() / mass) if mass > 0 else h / 2
            cx = float((m * xs).sum() / mass) if mass > 0 else w / 2
            rows.append({
                "index": i,
                "time": round(float(t), 3),
                "score": None if self.scores is None else round(float(self.scores[i]), 5),
                "peak": [int(px), int(py)],  # pixel (x, y) of the hottest point
                "peak_norm": [round(px / max(w - 1, 1), 4), round(py / max(h - 1, 1), 4)],
                "centroid_norm": [round(cx / max(w - 1, 1), 4), round(cy / max(h - 1, 1), 4)],
                "mean": round(float(m.mean()), 5),  # heat mass per pixel
                "hot_fraction": round(float((m >= 0.5).mean()), 5),  # share of pixels at >= half the peak
            })
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video, "query": self.query, "method": self.method, "encoder": self.encoder_id,
            "fit": self.fit, "frame_size": [int(self.frames.shape[2]), int(self.frames.shape[1])],
            "times": [round(float(t), 3) for t in self.times], "frames": self.summary(),
        }


def overlay_heatmap(frame: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured [0,1] map over a uint8 RGB frame: (1 - opacity) * frame + opacity * colour."""
    if not 0.0 <= opacity <= 1.0:
        raise GradCamError(f"opacity must be within [0, 1], got {opacity}.")
    colour = heat_colours(heat)
    return np.clip((1 - opacity) * frame.astype(np.float32) + opacity * colour, 0, 255).astype(np.uint8)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """[0,1] map -> uint8 RGB jet colours."""
    bgr = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return bgr[..., ::-1].copy()
