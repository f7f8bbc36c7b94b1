"""How the self-similarity view is drawn: a TSM heat map over a boundary-strength curve.

Both panels share the time axis (seconds). Detected boundaries are drawn as lines across the heat map and
the curve; k-means events are outlined as squares on the diagonal. Hover on a cell gives the two times
and the value; the app turns a click into the two frames with `similarity.frames_at`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from backends.analysis.similarity import SimilarityResult

PLOT_SIDE = 560  # px: the heat map is square, this wide and this tall
CURVE_HEIGHT = 150  # px of the strength panel under the heat map
PANEL_GAP = 40  # px between the two panels
MARGIN = dict(l=70, r=40, t=70, b=55)
COLORBAR_ROOM = 90  # px right of the plots for the colour bar
BOUNDARY_COLOUR = "rgba(255,255,255,0.85)"
BOUNDARY_ON_CURVE = "rgba(214,39,40,0.9)"
EVENT_COLOUR = "rgba(255,165,0,0.95)"


def _colour_range(result: SimilarityResult) -> tuple[float, float, str]:
    """RepNet rows put most mass on the diagonal: cap the scale at the off-diagonal 99th percentile."""
    m = result.matrix
    if result.kind == "repnet" and len(m) > 1:
        off = m[~np.eye(len(m), dtype=bool)]
        top = float(np.percentile(off, 99)) or float(m.max())
        return 0.0, top, f"softmax<br>(capped at {top:.3g})"
    return float(m.min()), float(m.max()), "cosine"


def similarity_figure(result: SimilarityResult) -> go.Figure:
    """Heat map of the TSM (time in seconds on both axes) with the boundary-strength curve beneath."""
    t = result.times
    zmin, zmax, bar_title = _colour_range(result)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    x_range = [float(t[0]) - step / 2, float(t[-1]) + step / 2]

    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        x=t, y=t, z=result.matrix, zmin=zmin, zmax=zmax, colorscale="Viridis",
        customdata=result.matrix,  # the uncapped value for the hover
        hovertemplate="frame i at %{y:.2f} s<br>frame j at %{x:.2f} s<br>value %{customdata:.4f}<extra></extra>",
        colorbar=dict(title=dict(text=bar_title, side="right"), len=PLOT_SIDE / _total_plot_height(),
                      y=1.0, yanchor="top", thickness=14, x=PLOT_SIDE / (PLOT_SIDE + COLORBAR_ROOM) + 0.02,
                      xanchor="left"),
        name="TSM", xaxis="x", yaxis="y",
    ))
    shapes = []
    for b in result.boundaries:
        line = dict(color=BOUNDARY_COLOUR, width=1.2)
        shapes.append(dict(type="line", xref="x", yref="y", x0=b, x1=b, y0=x_range[0], y1=x_range[1], line=line))
        shapes.append(dict(type="line", xref="x", yref="y", x0=x_range[0], x1=x_range[1], y0=b, y1=b, line=line))
        shapes.append(dict(type="line", xref="x", yref="y2 domain", x0=b, x1=b, y0=0, y1=1,
                           line=dict(color=BOUNDARY_ON_CURVE, width=1, dash="dot")))
    for s, e in result.events:
        s, e = max(float(s), x_range[0]), min(float(e), x_range[1])
        shapes.append(dict(type="rect", xref="x", yref="y", x0=s, x1=e, y0=s, y1=e,
                           line=dict(color=EVENT_COLOUR, width=2)))

    strength_t, strength = result.boundary_times[1:], result.strength[1:]
    fig.add_trace(go.Scatter(
        x=strength_t, y=strength, mode="lines", line=dict(color="#1f77b4", width=1.6),
        name="boundary strength", xaxis="x", yaxis="y2",
        hovertemplate="boundary at %{x:.2f} s<br>strength %{y:.3f}<extra></extra>",
    ))
    if len(result.boundaries):
        idx = np.searchsorted(result.boundary_times, result.boundaries)
        idx = np.clip(idx, 0, len(result.strength) - 1)
        fig.add_trace(go.Scatter(
            x=result.boundaries, y=result.strength[idx], mode="markers",
            marker=dict(color=BOUNDARY_ON_CURVE, size=7), name="detected boundary", xaxis="x", yaxis="y2",
            hovertemplate="boundary %{x:.2f} s<extra></extra>",
        ))
    threshold = result.params.get("threshold_std")
    if threshold is not None and len(strength):
        level = float(strength.mean() + threshold * strength.std())
        shapes.append(dict(type="line", xref="x", yref="y2", x0=x_range[0], x1=x_range[1], y0=level, y1=level,
                           line=dict(color="grey", width=1, dash="dash")))

    plot_h = _total_plot_height()
    plot_w = PLOT_SIDE + COLORBAR_ROOM
    caption_room = 40  # px under the x axis title for the two caption lines
    fig.update_layout(
        title=dict(text=_title(result), x=0.01, xanchor="left", font=dict(size=15)),
        width=MARGIN["l"] + plot_w + MARGIN["r"],
        height=MARGIN["t"] + plot_h + MARGIN["b"] + caption_room,
        margin=dict(MARGIN, b=MARGIN["b"] + caption_room), shapes=shapes, showlegend=False,
        plot_bgcolor="white",
        xaxis=dict(range=x_range, title="time j (s)", anchor="y2", domain=[0, PLOT_SIDE / plot_w],
                   showgrid=False, ticks="outside", zeroline=False),
        yaxis=dict(range=[x_range[1], x_range[0]], title="time i (s)", domain=[1 - PLOT_SIDE / plot_h, 1],
                   anchor="x", showgrid=False, ticks="outside", zeroline=False),
        yaxis2=dict(domain=[0, CURVE_HEIGHT / plot_h], anchor="x", title="boundary<br>strength",
                    showgrid=True, gridcolor="#eee", zeroline=False),
        hovermode="closest",
    )
    fig.add_annotation(
        text=_caption(result), xref="paper", yref="paper", x=0, y=-(MARGIN["b"] - 8) / plot_h,
        showarrow=False, xanchor="left", yanchor="top", align="left", font=dict(size=11, color="#555"),
    )
    return fig


def _total_plot_height() -> int:
    return PLOT_SIDE + PANEL_GAP + CURVE_HEIGHT


def _title(result: SimilarityResult) -> str:
    what = "RepNet TSM (softmax of -squared L2 / tau)" if result.kind == "repnet" else "cosine self-similarity"
    name = f"{result.video}: " if result.video else ""
    return (f"{name}{what}<br><sup>{result.encoder or 'features'} {result.features} features, "
            f"{result.fps:g} fps, {len(result.times)} frames; {len(result.boundaries)} boundaries, "
            f"{len(result.events)} events (k = {result.n_clusters}), {len(result.proposals)} proposals</sup>")


def _caption(result: SimilarityResult) -> str:
    p = result.params
    src = "k-means event edges" if p.get("boundaries_from") == "events" else "peaks of the curve"
    return (f"white lines: boundaries ({src}); orange squares: atomic events (k-means on cosine TSM rows + time)"
            f"<br>curve: checkerboard novelty on the cosine TSM, kernel {p.get('kernel_seconds', 0):g} s, dashed line = mean + "
            f"{p.get('threshold_std', 0):g} std")
