"""Evaluation: annotation readers, standard moment-retrieval protocols and blind baselines.

- `annotations`: Charades-STA txt, QVHighlights jsonl, ActivityNet Captions json, the simple json format.
- `metrics`: the momentlens protocol (R1/R5 at IoU >= 0.3/0.5/0.7 and top-1 mIoU after NMS).
- `charades`: the Charades-STA protocol (strict IoU > m, NMS 0.5 before top-k).
- `qvhighlights`: the QVHighlights protocol (R1, mAP over length buckets, highlight mAP / Hit@1).
- `baselines`: blind baselines `uniform`, `prior`, `prior-verb` (Otani et al., BMVC 2020).
- `cli`: the `evaluate` and `baseline` sub-commands.
"""

from backends.evaluation.annotations import (
    AnnotatedQuery,
    load_annotations,
    read_predictions,
)

__all__ = ["AnnotatedQuery", "load_annotations", "read_predictions"]
