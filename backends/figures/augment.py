"""How the augmentation view is drawn: plotly figures over an `AugmentViewResult`.

Frames are shown as small JPEG/PNG strips (`go.Image` with a data-URI source, so the HTML stays
light), laid out on a fixed pixel grid with each panel's sampled parameters written under it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from backends.analysis.augment import AugmentViewResult
from backends.analysis.cvrl import CvrlParams, CvrlResult, gap_pdf
from backends.analysis.fame import FameResult
from backends.analysis.motion import FlowResult, TemporalGradient, flow_colour_wheel

PLOT_WIDTH = 1160  # px of the drawing area (fits the app at a 1400 px window); every panel is laid out inside it
CELL_GAP = 24  # px between panels of a row
SEPARATOR = 4  # px of white between frames of a strip
TITLE_HEIGHT = 22
LINE_HEIGHT = 15
ROW_GAP = 16
PLOT_PAD_LEFT, PLOT_PAD_BOTTOM = 55, 38  # room for a chart's tick labels and axis titles
MARGIN = dict(l=20, r=20, t=56, b=10)
_JITTER_ABBREV = {"brightness": "B", "contrast": "C", "saturation": "S", "hue": "H"}


@dataclass
class _Cell:
    """One panel: an image or a chart, with a title above and caption lines below."""

    width: int
    height: int
    title: str = ""
    caption: list[str] = field(default_factory=list)
    image: np.ndarray | None = None  # uint8 RGB, shown at width x height
    traces: list[Any] = field(default_factory=list)
    xaxis: dict[str, Any] = field(default_factory=dict)
    yaxis: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
def _data_uri(image: np.ndarray, fmt: str = ".jpg") -> str:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, bgr, params)
    if not ok:  # pragma: no cover - imencode fails only on invalid arrays
        raise RuntimeError("could not encode an image for the figure")
    mime = "jpeg" if fmt == ".jpg" else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if w * h > width * height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def pick_frames(count: int, n: int) -> list[int]:
    """`n` evenly spaced frame indices out of `count` (all of them if fewer)."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(n, count))})


def frame_strip(frames: np.ndarray, width: int, n: int = 4, indices: Sequence[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Evenly spaced frames side by side in `width` pixels (white separators); returns image, indices."""
    idx = list(indices) if indices is not None else pick_frames(len(frames), n)
    k = len(idx)
    thumb_w = max(8, (width - SEPARATOR * (k - 1)) // k)
    h, w = frames.shape[1:3]
    thumb_h = max(8, int(round(thumb_w * h / w)))
    tiles = []
    for j, i in enumerate(idx):
        if j:
            tiles.append(np.full((thumb_h, SEPARATOR, 3), 255, np.uint8))
        tiles.append(_resize(frames[i], thumb_w, thumb_h))
    return np.concatenate(tiles, axis=1), idx


def colormap(values: np.ndarray) -> np.ndarray:
    """Float map in [0, 1] -> viridis RGB."""
    u8 = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def _image_cell(image: np.ndarray, width: int, title: str = "", caption: list[str] | None = None) -> _Cell:
    h, w = image.shape[:2]
    height = max(1, int(round(width * h / w)))
    return _Cell(width, height, title, list(caption or []), image=_resize(image, width, height))


def _strip_cell(frames: np.ndarray, width: int, n: int, title: str, caption: list[str] | None = None,
                indices: Sequence[int] | None = None) -> tuple[_Cell, list[int]]:
    strip, idx = frame_strip(frames, width, n, indices)
    return _Cell(strip.shape[1], strip.shape[0], title, list(caption or []), image=strip), idx


def _heading(text: str) -> list[_Cell]:
    return [_Cell(PLOT_WIDTH, 0, f"<b>{text}</b>")]


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------
def _compose(rows: list[list[_Cell]], title: str) -> go.Figure:
    """Place rows of panels top to bottom on a fixed pixel grid and return one figure."""
    placed = []
    y = 0
    for row in rows:
        content = max(c.height for c in row)
        lines = max(len(c.caption) for c in row)
        x = 0
        for c in row:
            placed.append((c, x, y + TITLE_HEIGHT, content))
            x += c.width + CELL_GAP
        y += TITLE_HEIGHT + content + (lines * LINE_HEIGHT + 6 if lines else 0) + ROW_GAP
    total_h = y
    W, H = float(PLOT_WIDTH), float(total_h)

    fig = go.Figure()
    layout: dict[str, Any] = {}
    legend: dict[str, Any] = dict(x=1, y=1)  # moved onto the first chart below
    annotations = []
    axis_no = 0
    for c, x, top, content in placed:
        if c.title:
            annotations.append(dict(
                x=x / W, y=1 - (top - 3) / H, xref="paper", yref="paper", xanchor="left",
                yanchor="bottom", text=c.title, showarrow=False, font=dict(size=13), align="left",
            ))
        if c.caption:
            annotations.append(dict(
                x=x / W, y=1 - (top + content + 4) / H, xref="paper", yref="paper", xanchor="left",
                yanchor="top", text="<br>".join(c.caption), showarrow=False, align="left",
                font=dict(size=11, family="DejaVu Sans Mono, Menlo, Consolas, monospace"),
            ))
        if c.image is None and not c.traces:
            continue
        axis_no += 1
        suffix = "" if axis_no == 1 else str(axis_no)
        if c.image is not None:
            x0, x1, y0, y1 = x, x + c.width, top, top + c.height
            h, w = c.image.shape[:2]
            fmt = ".png" if c.image.shape[0] * c.image.shape[1] < 20_000 else ".jpg"
            fig.add_trace(go.Image(source=_data_uri(c.image, fmt), hoverinfo="skip",
                                   xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
            xa = dict(range=[-0.5, w - 0.5], visible=False, fixedrange=True)
            ya = dict(range=[h - 0.5, -0.5], visible=False, fixedrange=True)
        else:
            x0, x1, y0, y1 = x + PLOT_PAD_LEFT, x + c.width, top, top + c.height - PLOT_PAD_BOTTOM
            for tr in c.traces:
                tr.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
                fig.add_trace(tr)
            xa, ya = dict(c.xaxis), dict(c.yaxis)
            if "placed" not in legend:
                legend = dict(x=x1 / W, y=1 - y0 / H, placed=True)
        xa.update(domain=[x0 / W, min(x1 / W, 1.0)], anchor=f"y{suffix}")
        ya.update(domain=[max(0.0, 1 - y1 / H), 1 - y0 / H], anchor=f"x{suffix}")
        layout[f"xaxis{suffix}"] = xa
        layout[f"yaxis{suffix}"] = ya

    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=16)),
        width=PLOT_WIDTH + MARGIN["l"] + MARGIN["r"], height=total_h + MARGIN["t"] + MARGIN["b"],
        autosize=False, margin=MARGIN, annotations=annotations, plot_bgcolor="white",
        paper_bgcolor="white", showlegend=True,
        legend=dict(x=legend["x"], y=legend["y"], xanchor="right", yanchor="top", font=dict(size=11),
                    bgcolor="rgba(255,255,255,0.8)"),
        **layout,
    )
    return fig


# --------------------------------------------------------------------------------------------
# CVRL
# --------------------------------------------------------------------------------------------
def describe_cvrl_params(p: CvrlParams) -> list[str]:
    """The sampled parameters of one view, one line per augmentation."""
    c = p.crop
    if "crop" not in p.enabled:
        crop = "crop     off: full frame"
    elif c["fallback"]:
        crop = f"crop     full frame (no fit in {c['attempts']} tries)"
    else:
        crop = (f"crop     {c['w']}x{c['h']} at ({c['x']},{c['y']}) "
                f"area {c['area_fraction']:.2f} aspect {c['aspect_ratio']:.2f}")
    lines = [crop + f" -> {p.crop_size}px"]

    def state(name: str, applied: bool, detail: str = "") -> str:
        if name not in p.enabled:
            return "off"
        return ("yes" + (f" {detail}" if detail else "")) if applied else "no"

    lines.append(f"flip     {state('flip', p.flip)}")
    j = p.jitter
    order = "".join(_JITTER_ABBREV[o] for o in j["order"])
    lines.append(
        f"jitter   {state('jitter', j['applied'], 'order ' + order)}"
        + (f"  B x{j['brightness']:.2f} C x{j['contrast']:.2f} S x{j['saturation']:.2f} H {j['hue']:+.3f}"
           if j["applied"] else "")
    )
    lines.append(f"gray     {state('gray', p.grayscale)}")
    blur_detail = f"sigma {p.blur['sigma']:.2f} kernel {p.blur['kernel']}"
    solarize_detail = f"(>= {p.solarize['threshold']} inverted)"
    lines.append(f"blur     {state('blur', p.blur['applied'], blur_detail)}")
    lines.append(f"solarize {state('solarize', p.solarize['applied'], solarize_detail)}")
    return lines


def _describe_frame_draw(t: int, p: CvrlParams) -> str:
    """One compact line for one frame of the inconsistent ablation."""
    parts = [f"f{t:<2d} area {p.crop['area_fraction']:.2f}"]
    if p.flip:
        parts.append("flip")
    if p.jitter["applied"]:
        j = p.jitter
        parts.append(f"B{j['brightness']:.1f} C{j['contrast']:.1f} S{j['saturation']:.1f} H{j['hue']:+.2f}")
    if p.grayscale:
        parts.append("gray")
    if p.blur["applied"]:
        parts.append(f"blur {p.blur['sigma']:.1f}")
    if p.solarize["applied"]:
        parts.append("solar")
    return " ".join(parts)


def gap_histogram_cell(cvrl: CvrlResult, width: int = PLOT_WIDTH, height: int = 230) -> _Cell:
    """Histogram of the sampled gaps with the analytic CVRL density over it."""
    T, p = cvrl.temporal.max_gap, cvrl.config.gap_power
    edges = np.linspace(0, T, 41)
    density, _ = np.histogram(cvrl.gap_draws, bins=edges, density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    k = np.linspace(0, T, 200)
    pdf = gap_pdf(k, T, p)
    g = cvrl.temporal.gap_drawn
    traces = [
        go.Bar(x=centres, y=density, width=np.diff(edges), name=f"{cvrl.gap_draws.size:,} sampled gaps",
               marker=dict(color="rgba(99,110,250,0.55)", line=dict(width=0)),
               hovertemplate="gap %{x:.0f}: density %{y:.4f}<extra></extra>"),
        go.Scatter(x=k, y=pdf, mode="lines", name=f"analytic f(k), p={p:g}",
                   line=dict(color="#d62728", width=2), hoverinfo="skip"),
        go.Scatter(x=[g, g], y=[0, float(pdf.max())], mode="lines", name=f"this draw k={g:.1f} (gap {cvrl.temporal.gap} frames)",
                   line=dict(color="black", dash="dash", width=1.5), hoverinfo="skip"),
    ]
    stats = cvrl.gap_statistics()
    caption = [
        f"T = L - (n-1)*stride = {cvrl.temporal.num_video_frames} - {cvrl.config.num_frames - 1}*{cvrl.config.stride}"
        f" = {T} frames; gap k drawn by inverting F(k); clip starts {cvrl.temporal.starts} (gap {cvrl.temporal.gap})",
        f"Kolmogorov-Smirnov vs the analytic CDF: D = {stats['ks_statistic']:.4f}, p = {stats['ks_pvalue']:.3f}",
    ]
    return _Cell(
        width, height, "Temporal interval sampling: gap between the two clips' starts", caption,
        traces=traces,
        xaxis=dict(title=dict(text="gap k (frames)", standoff=4), range=[0, T], showgrid=False, zeroline=False,
                   linecolor="#888", ticks="outside"),
        yaxis=dict(title=dict(text="density"), showgrid=True, gridcolor="#eee", zeroline=False,
                   linecolor="#888", rangemode="tozero"),
    )


def _outline_crop(frames: np.ndarray, crop: dict[str, Any]) -> np.ndarray:
    out = frames.copy()
    thick = max(2, frames.shape[2] // 100)
    y0, x0 = crop["y"], crop["x"]
    y1, x1 = y0 + crop["h"] - 1, x0 + crop["w"] - 1
    for f in out:
        cv2.rectangle(f, (x0, y0), (x1, y1), (255, 220, 0), thick)
    return out


def cvrl_rows(cvrl: CvrlResult, frames_shown: int = 4) -> list[list[_Cell]]:
    col = (PLOT_WIDTH - CELL_GAP) // 2
    rows: list[list[_Cell]] = [[], []]
    for v in (0, 1):
        idx = cvrl.temporal.clip_indices(v)
        source = cvrl.clips[v]
        if not cvrl.inconsistent:  # outline the crop the view took from every frame
            source = _outline_crop(source, cvrl.params[v][0].crop)
        cell, shown = _strip_cell(
            source, col, frames_shown, f"Clip {v + 1}: source frames (yellow: view {v + 1}'s crop)"
            if not cvrl.inconsistent else f"Clip {v + 1}: source frames",
            [f"start frame {cvrl.temporal.starts[v]}, {cvrl.config.num_frames} frames at stride "
             f"{cvrl.config.stride}; shown: {', '.join(str(int(idx[i])) for i in pick_frames(len(idx), frames_shown))}"],
        )
        rows[0].append(cell)
        params = cvrl.params[v]
        if cvrl.inconsistent:
            caption = ["INCONSISTENT ablation: a fresh draw on every frame"]
            caption += [_describe_frame_draw(t, params[t]) for t in shown]
            title = f"View {v + 1}: per-frame draws (not CVRL)"
        else:
            caption = describe_cvrl_params(params[0])
            title = f"View {v + 1}: one draw for all {len(cvrl.views[v])} frames"
        strip_cell, _ = _strip_cell(cvrl.views[v], col, frames_shown, title, caption, indices=shown)
        rows[1].append(strip_cell)
    if cvrl.gap_draws.size:
        rows.append([gap_histogram_cell(cvrl)])
    else:
        rows.append([_Cell(PLOT_WIDTH, 0, "", [
            f"video of {cvrl.temporal.num_video_frames} frames is shorter than one clip "
            f"({(cvrl.config.num_frames - 1) * cvrl.config.stride + 1} frames): both starts drawn uniformly"])])
    return rows


# --------------------------------------------------------------------------------------------
# FAME, temporal gradient, flow
# --------------------------------------------------------------------------------------------
def fame_rows(f: FameResult, frames_shown: int = 8) -> list[list[_Cell]]:
    n = 5
    w = (PLOT_WIDTH - CELL_GAP * (n - 1)) // n
    mid = len(f.foreground) // 2
    overlay = (f.foreground[mid] * (0.2 + 0.8 * f.mask[..., None])).astype(np.uint8)
    row = [
        _image_cell(f.foreground[mid], w, "Foreground clip", [f"frame {mid} of {len(f.foreground)}"]),
        _image_cell(colormap(f.motion_map), w, "Motion map D", ["mean_t sum_c |x_t - x_t+1|", "blurred, min-max"]),
        _image_cell(colormap(f.score), w, "Colour score", ["P_fg / (P_fg + P_bg)", "10x10x10 HSV bins"]),
        _image_cell(overlay, w, f"Mask M (beta={f.beta:g})", [f"top {f.mask.mean():.0%} of the score"]),
        _image_cell(f.background[mid], w, "Background clip", ["another clip"]),
    ]
    merged, _ = _strip_cell(f.merged, PLOT_WIDTH, frames_shown, "Merged clip: x*M + x_other*(1-M)")
    return [row, [merged]]


def _motion_rows(clip: np.ndarray, images: np.ndarray, title: str, caption: list[str],
                 frames_shown: int, extra: _Cell | None = None) -> list[list[_Cell]]:
    width = PLOT_WIDTH - (extra.width + CELL_GAP if extra else 0)
    idx = pick_frames(len(images), frames_shown)
    src, _ = _strip_cell(clip, width, frames_shown, "Frames t", indices=idx)
    mot, _ = _strip_cell(images, width, frames_shown, title, caption, indices=idx)
    return [[src], [mot] + ([extra] if extra else [])]


def tgrad_rows(g: TemporalGradient, clip: np.ndarray, frames_shown: int = 8) -> list[list[_Cell]]:
    return _motion_rows(clip, g.images, "Temporal gradient |x_t+1 - x_t|",
                        [f"scaled so that |diff| = {g.scale:.0f} (99th percentile) is white"], frames_shown)


def flow_rows(fl: FlowResult, clip: np.ndarray, frames_shown: int = 8) -> list[list[_Cell]]:
    wheel = _image_cell(flow_colour_wheel(96), 72, "Direction")
    return _motion_rows(clip, fl.images, "Farneback optical flow t -> t+1",
                        [f"hue = direction, value = magnitude (full at {fl.max_magnitude:.1f} px/frame)"],
                        frames_shown, extra=wheel)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def augment_figure(result: AugmentViewResult) -> go.Figure:
    """One figure with every panel the result holds (CVRL, FAME, temporal gradient, flow)."""
    rows: list[list[_Cell]] = []
    several = sum(x is not None for x in (result.cvrl, result.fame, result.tgrad, result.flow)) > 1
    if result.cvrl is not None:
        if several:
            rows.append(_heading("CVRL: temporally consistent spatial augmentation"))
        rows += cvrl_rows(result.cvrl)
    if result.fame is not None:
        if several:
            rows.append(_heading("FAME: foreground-background merging"))
        rows += fame_rows(result.fame)
    if result.tgrad is not None:
        if several:
            rows.append(_heading("Temporal gradient"))
        assert result.motion_clip is not None  # set whenever a motion view is
        rows += tgrad_rows(result.tgrad, result.motion_clip)
    if result.flow is not None:
        if several:
            rows.append(_heading("Dense optical flow"))
        assert result.motion_clip is not None
        rows += flow_rows(result.flow, result.motion_clip)
    name = result.video.get("name", "frames")
    title = f"Augmentation view ({result.method}) of {name}, seed {result.seed}"
    if set(result.enabled) != {"crop", "flip", "jitter", "gray", "blur", "solarize"}:
        chosen = f"only {', '.join(result.enabled)}" if result.enabled else "no augmentation (the clips as sampled)"
        title += f" - {chosen}" + (" (forced)" if result.force else "")
    return _compose(rows, title)


# --------------------------------------------------------------------------------------------
# PNG files (`momentlens augment --out DIR`)
# --------------------------------------------------------------------------------------------
def frame_grid(frames: np.ndarray, cols: int = 8) -> np.ndarray:
    """All frames at full size in a grid of `cols` columns, white separators."""
    t, h, w, _ = frames.shape
    cols = min(cols, t)
    rows = -(-t // cols)
    grid = np.full((rows * h + (rows - 1) * SEPARATOR, cols * w + (cols - 1) * SEPARATOR, 3), 255, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * (h + SEPARATOR):r * (h + SEPARATOR) + h, c * (w + SEPARATOR):c * (w + SEPARATOR) + w] = f
    return grid


def _gap_histogram_png(cvrl: CvrlResult, path: str | os.PathLike) -> bool:
    """The gap histogram as a PNG via matplotlib (plotly's static export needs kaleido and a browser).
    matplotlib's object API only: no pyplot, so a notebook's backend is left alone."""
    T, p = cvrl.temporal.max_gap, cvrl.config.gap_power
    k = np.linspace(0, T, 200)
    fig = Figure(figsize=(7, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(cvrl.gap_draws, bins=np.linspace(0, T, 41).tolist(), density=True, alpha=0.55,
            label=f"{cvrl.gap_draws.size:,} sampled gaps")
    ax.plot(k, gap_pdf(k, T, p), color="#d62728", label=f"analytic f(k), p={p:g}")
    if cvrl.temporal.gap_drawn is not None:
        ax.axvline(cvrl.temporal.gap_drawn, color="black", ls="--", lw=1, label="this draw")
    ax.set_xlabel("gap k (frames)")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return True


def save_images(result: AugmentViewResult, out_dir: str | os.PathLike) -> list:
    """Write the view's frame grids and maps as PNG files into `out_dir`; returns the paths."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, np.ndarray] = {}
    if result.cvrl is not None:
        c = result.cvrl
        for v in (0, 1):
            images[f"cvrl_clip{v + 1}"] = frame_grid(c.clips[v])
            images[f"cvrl_view{v + 1}"] = frame_grid(c.views[v])
    if result.fame is not None:
        f = result.fame
        images.update(
            fame_motion_map=colormap(f.motion_map), fame_score=colormap(f.score),
            fame_mask=np.repeat((f.mask[..., None] * 255).astype(np.uint8), 3, axis=-1),
            fame_foreground=frame_grid(f.foreground), fame_background=frame_grid(f.background),
            fame_merged=frame_grid(f.merged),
        )
    if result.tgrad is not None:
        images["tgrad"] = frame_grid(result.tgrad.images)
    if result.flow is not None:
        images["flow"] = frame_grid(result.flow.images)
        images["flow_wheel"] = flow_colour_wheel(128)
    written = []
    for name, image in images.items():
        path = out / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        written.append(path)
    if result.cvrl is not None and result.cvrl.gap_draws.size:
        path = out / "cvrl_gaps.png"
        if _gap_histogram_png(result.cvrl, path):
            written.append(path)
    return written
