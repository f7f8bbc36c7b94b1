"""How the temporal-scaling view is drawn: per-layer mean and mean |scale| against depth, checkpoints overlaid."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from backends.analysis.scaling import CheckpointScales


def scaling_figure(scales: Sequence[CheckpointScales]) -> go.Figure:
    """Per-layer mean (left) and mean |value| (right) against depth, one line per checkpoint and series."""

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("mean scale per layer", "mean |scale| per layer"))
    palette = qualitative.Plotly
    dashes = ("solid", "dash", "dot", "dashdot")
    n_series = max(len(s.series()) for s in scales)
    for ci, ck in enumerate(scales):
        for si, (series, params) in enumerate(ck.series().items()):
            layers = [p.layer for p in params]
            name = ck.label if n_series == 1 else f"{ck.label}: {series}"
            style = dict(color=palette[ci % len(palette)], dash=dashes[si % len(dashes)])
            hover = "%{customdata}<br>layer %{x}: %{y:.4g}<extra>" + ck.label + "</extra>"
            for col, values in ((1, [p.mean for p in params]), (2, [p.mean_abs for p in params])):
                fig.add_trace(go.Scatter(
                    x=layers, y=values, mode="lines+markers", name=name, line=style, legendgroup=name,
                    showlegend=col == 1, customdata=[p.name for p in params], hovertemplate=hover,
                ), 1, col)
    fig.add_hline(y=0, line=dict(color="#999", width=1), row=1, col=1)
    fig.update_xaxes(title_text="layer depth (index)", dtick=1)
    fig.update_yaxes(title_text="mean", row=1, col=1)
    fig.update_yaxes(title_text="mean |value|", rangemode="tozero", row=1, col=2)
    fig.update_layout(
        title=dict(text="Temporal scaling per layer (LiteVL): scale parameters read by name", x=0.01),
        template="plotly_white", height=460, width=1100, legend=dict(orientation="h", y=-0.22),
        margin=dict(l=60, r=30, t=80, b=110),
    )
    return fig
