"""Moment retrieval: a text query in, ranked [start, end] moments out.

- `engine`: `retrieve`, `retrieve_many`, `predict_for_annotations` (the entry points), the per-video index,
  candidate scoring, NMS.
- `zero_shot`: the zero-shot scorers over candidate windows (cumulative sums; the default is `z-visual`).

The 2D-TAN grids and masks are in `backends.analysis.temporal_map`, the trained head in
`backends.models.grounding`, the figures in `backends.figures.retrieval`. Import from the modules
(`from backends.retrieval.engine import retrieve`): this package imports nothing, so that the command line
reads the scorer names without loading torch.
"""
