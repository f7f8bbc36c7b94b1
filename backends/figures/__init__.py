"""Plotly figures, one module per view; they draw result dataclasses and compute nothing new."""
