"""Moment retrieval: 2D temporal maps (2D-TAN), zero-shot scorers, top-k moments, figures and CLI.

- `temporal_map`: clip grids, dense/sparse 2D-TAN masks, cell times, pooled cell features.
- `zero_shot`: scorers over candidate windows (cumulative sums; the default is `z-visual`).
- `engine`: `retrieve`, `retrieve_many`, `predict_for_annotations` (the entry points).
- `figures`: plotly 2D map heat map, saliency curve, several queries on one timeline.
- `cli`: the `retrieve` and `map2d` sub-commands.
"""

from backends.retrieval.engine import (
    Moment,
    RetrievalResult,
    predict_for_annotations,
    retrieve,
    retrieve_many,
)
from backends.retrieval.temporal_map import TemporalMap

__all__ = ["Moment", "RetrievalResult", "TemporalMap", "predict_for_annotations", "retrieve", "retrieve_many"]
