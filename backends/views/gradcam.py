"""Text-conditioned Grad-CAM: where in each frame the encoder finds what the query names.

Grad-CAM (Selvaraju et al. 2017) through the `grad-cam` package; the target is the cosine similarity
between a frame's joint embedding (`encoder.image_model()`) and the query's text embedding, so the map
shows the regions that raise the frame-query score. Works for any `Encoder` (2-D maps) and for video
encoders whose `preprocess` returns a clip (1, 3, T, S, S) (5-D activations, maps per frame).

>>> result, fig = gradcam_view("clip.mp4", "a cardboard box", encoder="conse-effnet-minilm", frames=8)
>>> result.maps.shape == result.frames.shape[:3]    # (K, H, W) in [0, 1]
"""

from __future__ import annotations

import base64
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backends.encoders import Encoder, cached_encoder
from backends.errors import MomentLensError, QueryError
from backends.video import probe, read_frames

log = logging.getLogger(__name__)

from backends.views.gradcam_options import FITS, METHODS  # noqa: E402  (re-exported)
MAX_QUERY_CHARS = 500


class GradCamError(MomentLensError):
    """Grad-CAM cannot run with these inputs (bad method, no frames, no gradient reaching the layer)."""


def _cam_class(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus

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
    reshape_transform: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps of `model(inputs)`'s cosine similarity to `text_embedding` at `target_layer`.

    inputs (B,3,S,S) give maps (B,S,S); clips (B,3,T,S,S) give (B,T,S,S); each map is min-max scaled
    to [0, 1]. Also returns the B cosine scores (None without a text embedding). Runs with autograd on,
    whatever the caller's grad mode; the hooks are removed on return.
    """
    cam_class = _cam_class(method)
    needs_text = method != "eigencam"
    if text_embedding is None and needs_text:
        raise GradCamError(f"{method} needs a text query; EigenCAM alone works without one.")
    text = None if text_embedding is None else torch.as_tensor(np.asarray(text_embedding, np.float32)).reshape(-1)
    with torch.inference_mode(False), torch.enable_grad(), _frozen_parameters(model):
        x = inputs.detach().clone().requires_grad_(True)  # gradients reach the layer through the input
        targets = [CosineToText(text)] * len(x) if needs_text else None
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


def check_query(query: str | None, required: bool) -> str:
    text = (query or "").strip()
    if required and not text:
        raise QueryError("the query is empty; type what to look for (e.g. 'a dog on a sofa').")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query has {len(text)} characters; keep it under {MAX_QUERY_CHARS}.")
    return text


def gradcam_frames(
    frames: np.ndarray,
    query: str | None,
    encoder: Encoder | str | None = None,
    method: str = "gradcam",
    fit: str = "squash",
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 RGB frames (T,H,W,3) -> (maps (T,H,W) in [0,1], cosine scores (T,) or None without a query).

    Image encoders take the frames in batches; a video encoder (its `preprocess` returns (1,3,T,S,S))
    takes them as one clip and its 5-D maps come back per frame.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise GradCamError(f"expected RGB frames shaped (T,H,W,3), got {frames.shape}.")
    enc = encoder if isinstance(encoder, Encoder) or hasattr(encoder, "image_model") else cached_encoder(encoder)
    text = check_query(query, required=method != "eigencam")
    text_emb = enc.encode_text([text])[0] if text else None
    model, layer, reshape = enc.image_model(), enc.target_layer(), enc.reshape_transform()
    model_frames, geometry = frames_to_input(frames, int(enc.input_size), fit, getattr(enc, "input_fit", "crop"))
    h, w = frames.shape[1:3]
    maps, scores = [], []
    probe_input = enc.preprocess(model_frames[:1])
    clip_input = probe_input.ndim == 5
    step = len(frames) if clip_input else batch_size
    for i in range(0, len(frames), step):
        x = enc.preprocess(model_frames[i : i + step])
        cams, sc = query_cam(model, layer, x, text_emb, method, reshape)
        per_frame = cams.reshape(-1, *cams.shape[-2:])  # (B,T,S,S) clips -> T frame maps
        maps.extend(map_to_frame(c, geometry, h, w) for c in per_frame)
        if sc is not None:
            scores.extend(np.repeat(sc, len(per_frame) // len(sc)))
    if len(maps) != len(frames):
        raise GradCamError(f"the encoder returned {len(maps)} maps for {len(frames)} frames.")
    return np.stack(maps).astype(np.float32), (np.asarray(scores, np.float32) if scores else None)


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

    def to_json(self) -> dict[str, Any]:
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
    bgr = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return bgr[..., ::-1].copy()


def sample_frames(video_path, count: int, start: float = 0.0, end: float | None = None):
    """`count` frames spread evenly over [start, end] (default the whole video): (frames, times)."""
    if count < 1:
        raise GradCamError(f"--frames must be at least 1, got {count}.")
    info = probe(video_path)
    stop = info.duration if end is None else min(end, info.duration)
    span = max(stop - start, 1e-3)
    # one frame at the middle of each of `count` equal parts of [start, stop]
    frames, times = read_frames(video_path, fps=count / span * 1.0001, start=start + span / (2 * count), end=end)
    if len(frames) > count:  # the decoder's sampling grid may add one at the end
        keep = np.linspace(0, len(frames) - 1, count).round().astype(int)
        frames, times = frames[keep], times[keep]
    return frames, times


def gradcam_view(
    video_path,
    query: str,
    encoder: Encoder | str | None = None,
    frames: int = 8,
    method: str = "gradcam",
    opacity: float = 0.5,
    fit: str = "squash",
    start: float = 0.0,
    end: float | None = None,
) -> tuple[GradCamResult, "Any"]:
    """Grad-CAM maps of `query` on `frames` frames spread over a video: (GradCamResult, plotly Figure)."""
    _cam_class(method)
    if not 0.0 <= opacity <= 1.0:
        raise GradCamError(f"opacity must be within [0, 1], got {opacity}.")
    enc = encoder if isinstance(encoder, Encoder) else cached_encoder(encoder)
    text = check_query(query, required=method != "eigencam")
    rgb, times = sample_frames(video_path, frames, start, end)
    maps, scores = gradcam_frames(rgb, text, enc, method=method, fit=fit)
    result = GradCamResult(rgb, maps, times, text, method, enc.id, scores, fit, str(video_path))
    return result, gradcam_figure(result, opacity)


# --------------------------------------------------------------------------------------------
# figure and PNGs
# --------------------------------------------------------------------------------------------
def _png_uri(rgb: np.ndarray, max_width: int = 560) -> str:
    h, w = rgb.shape[:2]
    if w > max_width:
        rgb = cv2.resize(rgb, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def gradcam_figure(result: GradCamResult, opacity: float = 0.5):
    """Frame | frame + heat map side by side, one slider step per frame (opacity adjustable per trace)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    k = len(result.frames)
    h, w = result.frames.shape[1:3]
    scale = min(1.0, 560 / w)
    dw, dh = round(w * scale), round(h * scale)
    label = "EigenCAM (query-free)" if result.method == "eigencam" else f"{result.method}: \u201c{result.query}\u201d"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.03,
                        subplot_titles=("frame", f"heat map, {label}"))
    traces_per_step = 3
    for i in range(k):
        visible = i == 0
        common = dict(x0=0, y0=0, dx=1 / scale, dy=1 / scale, visible=visible, hoverinfo="skip")
        fig.add_trace(go.Image(source=_png_uri(result.frames[i]), name=f"frame {i}", **common), 1, 1)
        fig.add_trace(go.Image(source=_png_uri(result.frames[i]), name=f"frame {i}", **common), 1, 2)
        fig.add_trace(go.Image(source=_png_uri(heat_colours(result.maps[i])), opacity=opacity,
                               name=f"heat {i}", **common), 1, 2)
    steps = []
    for i in range(k):
        vis = [False] * (traces_per_step * k)
        vis[traces_per_step * i : traces_per_step * (i + 1)] = [True] * traces_per_step
        score = "" if result.scores is None else f", cosine to query {result.scores[i]:.3f}"
        title = f"{Path(result.video).name or 'frames'} \u2014 frame {i + 1}/{k} at {result.times[i]:.2f} s{score}"
        steps.append(dict(method="update", label=f"{result.times[i]:.1f}s",
                          args=[{"visible": vis}, {"title.text": title}]))
    first_title = steps[0]["args"][1]["title.text"] if steps else ""
    fig.update_layout(
        title=dict(text=first_title, x=0.01),
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="time: "), pad=dict(t=40))],
        height=dh + 230, width=2 * dw + 120, margin=dict(l=30, r=30, t=80, b=30),
        template="plotly_white",
    )
    for c in (1, 2):
        fig.update_xaxes(visible=False, range=[0, w], row=1, col=c)
        fig.update_yaxes(visible=False, range=[h, 0], scaleanchor=f"x{'' if c == 1 else c}", row=1, col=c)
    fig.add_annotation(
        text=f"{result.encoder_id}; fit={result.fit}; red = raises the frame-query similarity; heat opacity {opacity:g}",
        xref="paper", yref="paper", x=0, y=-0.02, showarrow=False, font=dict(size=11, color="#555"),
        xanchor="left", yanchor="top",
    )
    return fig


def save_pngs(result: GradCamResult, out_dir, opacity: float = 0.5) -> list[Path]:
    """Write one overlay PNG per frame (`frame_000_1.00s.png`) and the raw maps (`heat_000.png`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (blend, m, t) in enumerate(zip(result.overlays(opacity), result.maps, result.times)):
        p = out / f"frame_{i:03d}_{t:.2f}s.png"
        cv2.imwrite(str(p), blend[..., ::-1])
        q = out / f"heat_{i:03d}.png"
        cv2.imwrite(str(q), np.uint8(np.clip(m, 0, 1) * 255))
        written += [p, q]
    return written
