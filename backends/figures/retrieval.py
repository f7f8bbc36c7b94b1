"""Plotly figures of retrieval results: the 2D temporal map, the saliency curve, several queries at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from backends.analysis.temporal_map import TemporalMap
from backends.retrieval.engine import Moment, RetrievalResult

MOMENT_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def temporal_map_figure(tmap: TemporalMap, moments: Sequence[Moment] = (), gt: tuple[float, float] | None = None,
                        title: str = "2D temporal map") -> go.Figure:
    """Heat map with moment start on x and end on y (MS-2D-TAN convention); invalid cells blank;
    top-k moments as numbered markers, ground truth as a green square."""
    ct = tmap.clip_times
    starts, ends = ct[:, 0], ct[:, 1]
    z = np.where(tmap.mask, tmap.scores, np.nan).T  # rows = end clip, columns = start clip
    hover = "start %{x:.2f} s<br>end %{y:.2f} s<br>score %{z:.3f}<extra></extra>"
    fig = go.Figure(go.Heatmap(x=starts, y=ends, z=z, colorscale="Viridis", hoverongaps=False,
                               hovertemplate=hover, colorbar=dict(title="score")))
    for rank, m in enumerate(moments, start=1):
        fig.add_trace(go.Scatter(
            x=[m.start], y=[m.end], mode="markers+text", text=[str(rank)], textposition="top right",
            marker=dict(size=14 if rank == 1 else 10, color="rgba(0,0,0,0)",
                        line=dict(color=MOMENT_COLOURS[(rank - 1) % len(MOMENT_COLOURS)], width=3)),
            textfont=dict(color="white", size=13), name=f"#{rank} [{m.start:.1f}, {m.end:.1f}] {m.score:.2f}",
            hovertemplate=f"moment #{rank}<br>{m.start:.2f}-{m.end:.2f} s<br>score {m.score:.3f}<extra></extra>"))
    if gt is not None:
        fig.add_trace(go.Scatter(x=[gt[0]], y=[gt[1]], mode="markers", name=f"ground truth [{gt[0]:.1f}, {gt[1]:.1f}]",
                                 marker=dict(symbol="square-open", size=18, color="#2ca02c", line=dict(width=3)),
                                 hovertemplate="ground truth<br>%{x:.2f}-%{y:.2f} s<extra></extra>"))
    lim = [float(starts[0]), float(ends[-1])]
    fig.update_layout(title=title, xaxis_title="moment start (s)", yaxis_title="moment end (s)",
                      xaxis=dict(range=lim, constrain="domain"), yaxis=dict(range=lim, scaleanchor="x"),
                      legend=dict(orientation="h", y=-0.15), plot_bgcolor="white", height=620, width=760)
    return fig


def saliency_figure(result: RetrievalResult, top: int = 3) -> go.Figure:
    """Query-frame similarity over time with the top moments shaded."""
    return timeline_figure([result], top=top, title=f"saliency: {result.query!r}")


def timeline_figure(results: Sequence[RetrievalResult], top: int = 1, title: str = "queries on one timeline") -> go.Figure:
    """Several queries' saliency curves on one time axis; each query's top moments shaded in its colour."""
    fig = go.Figure()
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    for i, r in enumerate(results):
        colour = palette[i % len(palette)]
        label = r.query if len(r.query) <= 48 else r.query[:45] + "..."
        tag = f"Q{i + 1}"  # several queries: the legend and the shaded moments say which query is which
        name = label if len(results) == 1 else f"{tag}: {label}"
        fig.add_trace(go.Scatter(x=r.saliency_times, y=r.saliency, mode="lines+markers", name=name,
                                 line=dict(color=colour), marker=dict(size=4),
                                 hovertemplate="%{x:.1f} s<br>similarity %{y:.3f}<extra></extra>"))
        if i == 0:  # samples without content (black, blank, fade, blur) greyed out: they never make a moment
            for span in r.content_free():
                fig.add_vrect(x0=span["start"], x1=span["end"], fillcolor="#888", opacity=0.35, line_width=0,
                              annotation_text=f"no content ({span['reason']})", annotation_position="bottom left",
                              annotation_font_size=10)
        # each rank's label on a line of its own (overlapping moments start close together, and their labels hid
        # each other), and #1 drawn last so that it lies on top
        for rank, m in reversed(list(enumerate(r.moments[:top], start=1))):
            fig.add_vrect(x0=m.start, x1=m.end, fillcolor=colour, opacity=0.22 if rank == 1 else 0.1, line_width=0,
                          annotation_text=f"#{rank}" if len(results) == 1 else (tag if top == 1 else f"{tag} #{rank}"),
                          annotation_position="top left", annotation_yshift=-14 * (rank - 1))
    duration = max(r.duration for r in results) if results else 1.0
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="cosine similarity with the query",
                      xaxis=dict(range=[0, duration]), legend=dict(orientation="h", y=-0.2),
                      hovermode="x",  # hover and click pick the sampled frame under the pointer's time
                      plot_bgcolor="white", height=420, width=1100)
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig
