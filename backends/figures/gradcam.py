"""How the Grad-CAM view is drawn: frame and overlay side by side with a frame slider; PNG export."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backends.analysis.gradcam import GradCamResult, heat_colours


# --------------------------------------------------------------------------------------------
# figure and PNGs
# --------------------------------------------------------------------------------------------
def _png_uri(rgb: np.ndarray, max_width: int = 560) -> str:
    h, w = rgb.shape[:2]
    if w > max_width:
        rgb = cv2.resize(rgb, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def gradcam_figure(result: GradCamResult, opacity: float = 0.5) -> go.Figure:
    """Frame | frame + heat map side by side, one slider step per frame (opacity adjustable per trace)."""

    k = len(result.frames)
    h, w = result.frames.shape[1:3]
    scale = min(1.0, 560 / w)
    dw, dh = round(w * scale), round(h * scale)
    own_embedding = "target" in result.extras  # a clip-only video encoder: the clip's embedding is the target
    if result.method == "eigencam":
        label = "EigenCAM (query-free)"
    elif own_embedding:
        label = f"{result.method}: the clip's own embedding"
    else:
        label = f"{result.method}: \u201c{result.query}\u201d"
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
    steps: list[dict[str, Any]] = []
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
        text=(f"{result.encoder_id}; fit={result.fit}; "
              + ("red = the strongest principal component of the layer's activations (no target)"
                 if result.method == "eigencam" else
                 "one clip of the video encoder; red = raises the clip embedding's projection on itself"
                 if own_embedding else "red = raises the frame-query similarity")
              + (f" (frames of one {result.extras['clip']['frames']}-frame clip at {result.extras['clip']['frame_rate']:g} fps)"
                 if "clip" in result.extras and not own_embedding else "")
              + f"; heat opacity {opacity:g}"),
        xref="paper", yref="paper", x=0, y=-0.02, showarrow=False, font=dict(size=11, color="#555"),
        xanchor="left", yanchor="top",
    )
    return fig


def save_pngs(result: GradCamResult, out_dir: str | os.PathLike, opacity: float = 0.5) -> list[Path]:
    """Write one overlay PNG per frame (`frame_000_1.00s.png`) and the raw maps (`heat_000.png`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (blend, m, t) in enumerate(zip(result.overlays(opacity), result.maps, result.times)):
        p = out / f"frame_{i:03d}_{t:.2f}s.png"
        cv2.imwrite(str(p), blend[..., ::-1])
        q = out / f"heat_{i:03d}.png"
        cv2.imwrite(str(q), (np.clip(m, 0, 1) * 255).astype(np.uint8))
        written += [p, q]
    return written
