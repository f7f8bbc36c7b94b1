"""Contracts shared by every layer: the progress and stop callbacks, and the one check of a text query.

Long computations take `progress(fraction, text)` (fraction done in [0, 1] and a short description of the
current step) and `should_stop()` (True cancels with CancelledError, keeping nothing partial).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backends.core.errors import QueryError

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
StopFn = Callable[[], bool]  # True: stop now (CancelledError, nothing partial kept)

MAX_QUERY_CHARS = 1000  # one or two sentences; longer text is almost always a paste by mistake


def check_query(query: Any, *, required: bool = True) -> str:
    """The query with its whitespace collapsed, or QueryError with one sentence.

    `required=False` allows an empty query (returned as ""), e.g. for Grad-CAM methods that need no text.
    """
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise QueryError("the query must be text; type a sentence describing the moment to find.")
    text = " ".join(query.split())
    if required and not text:
        raise QueryError("the query is empty; type a sentence describing the moment to find.")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query has {len(text)} characters; keep it under {MAX_QUERY_CHARS} (one or two sentences).")
    return text
