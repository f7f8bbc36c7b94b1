"""Plotly figure of two encoders on one clip and query: both saliency curves on one time axis, each
encoder's top moments shaded in its colour (the 2D maps reuse `temporal_map_figure`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from backends.retrieval.engine import RetrievalResult

ENCODER_COLOURS = ("#1f77b4", "#d62728")  # encoder A, encoder B (the app's column headers use the same)


def rescale(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant curve -> 0.5): cosine scales differ between encoders, shapes compare."""
    v = np.asarray(values, dtype=float)
    span = float(v.max() - v.min()) if v.size else 0.0
    return np.full_like(v, 0.5) if span <= 1e-12 else (v - v.min()) / span


def compare_saliency_figure(results: Sequence[RetrievalResult], labels: Sequence[str], top: int = 1,
                            title: str | None = None) -> go.Figure:
    """Both saliency curves, each rescaled to [0, 1] (hover shows the raw cosine); the top `top` moments
    of each encoder shaded in its colour, with the rank as label (A1, B1, ...)."""
    fig = go.Figure()
    for i, (r, label) in enumerate(zip(results, labels, strict=True)):
        colour = ENCODER_COLOURS[i % len(ENCODER_COLOURS)]
        letter = "AB"[i] if i < 2 else str(i + 1)
        fig.add_trace(go.Scatter(
            x=r.saliency_times, y=rescale(r.saliency), customdata=np.asarray(r.saliency, dtype=float),
            mode="lines+markers", name=f"{letter}: {label}", line=dict(color=colour), marker=dict(size=4),
            hovertemplate="%{x:.1f} s<br>cosine %{customdata:.3f}<extra>" + letter + "</extra>"))
        for rank, m in enumerate(r.moments[:top], start=1):
            fig.add_vrect(x0=m.start, x1=m.end, fillcolor=colour, opacity=0.2 if rank == 1 else 0.08, line_width=0,
                          annotation_text=f"{letter}{rank}",
                          annotation_position="top left" if i == 0 else "bottom left")
    duration = max((r.duration for r in results), default=1.0)
    query = results[0].query if results else ""
    fig.update_layout(title=title or f"saliency of {query!r}, each encoder rescaled to [0, 1]",
                      xaxis_title="time (s)", yaxis_title="similarity with the query (rescaled)",
                      xaxis=dict(range=[0, duration]), yaxis=dict(range=[-0.05, 1.12]),
                      legend=dict(orientation="h", y=-0.22), plot_bgcolor="white", height=360, width=1100,
                      hovermode="x")
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig
