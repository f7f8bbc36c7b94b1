"""Contracts shared by every layer: the progress and stop callbacks, the one check of a text query, and how a
count of things is written.

Long computations take `progress(fraction, text)` (fraction done in [0, 1] and a short description of the
current step) and `should_stop()` (True cancels with CancelledError, keeping nothing partial).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from backends.core.errors import QueryError

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
StopFn = Callable[[], bool]  # True: stop now (CancelledError, nothing partial kept)

MAX_QUERY_CHARS = 1000  # one or two sentences; longer text is almost always a paste by mistake
# C0/C1 control characters and the Unicode direction overrides and isolates (they make a query display
# differently from what it says); tabs and newlines are whitespace and are collapsed instead
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# the word joiner and the byte-order mark show nothing: dropped; a zero-width space separates words (so a query of
# them alone is empty)
_INVISIBLE = re.compile("[\u2060\ufeff]")
# zero-width (non-)joiners are part of a word between two visible characters (Persian and Indic spelling, emoji
# sequences, ZWJ ZWNJ ZWJ runs in Arabic): a run of them kept there, dropped anywhere else (alone, at a word's edge)
_JOINERS = re.compile("[\u200c\u200d]+")


def _drop_loose_joiners(text: str) -> str:
    def keep(m: re.Match) -> str:  # runs are maximal: the characters around one are not joiners
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        return m.group() if not before.isspace() and not after.isspace() else ""

    return _JOINERS.sub(keep, text)


def count(n: int, noun: str) -> str:
    """'1 moment', '5 moments'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_query(query: Any, *, required: bool = True) -> str:
    """The query with its whitespace collapsed, or QueryError with one sentence.

    `required=False` allows an empty query (returned as ""), e.g. for Grad-CAM methods that need no text.
    """
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise QueryError("the query must be text; type a sentence describing the moment to find.")
    text = " ".join(_drop_loose_joiners(_INVISIBLE.sub("", query).replace("\u200b", " ")).split())
    if required and not text:
        raise QueryError("the query is empty; type a sentence describing the moment to find.")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query has {len(text)} characters; keep it under {MAX_QUERY_CHARS} (one or two sentences).")
    bad = _CONTROL.search(text)
    if bad:
        raise QueryError(f"the query contains control characters (U+{ord(bad.group()):04X}); type plain text.")
    return text
