"""Readers for moment-retrieval annotation files, all returning `list[AnnotatedQuery]`.

Formats:
- Charades-STA txt: `VID START END##query`, one query per line; with Charades v1 durations
  (`Charades_v1_{train,test}.csv`, column `length`) end times are clipped to the duration and
  annotations with start >= end are dropped (as in Otani et al. 2020).
- QVHighlights jsonl: `{"qid", "query", "duration", "vid", "relevant_windows", "relevant_clip_ids",
  "saliency_scores"}`; clips are 2 s.
- ActivityNet Captions json: `{vid: {"duration", "timestamps": [[s, e]], "sentences": [...]}}`.
- The simple json of `realmix_dev.json` / `charades_Y1HGC.json`:
  `{"video", "duration", "queries": [{"query", "gt": [s, e]}]}` (or a list of such documents).

A line (or entry) that does not parse raises `AnnotationError` naming the file and the line.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from backends.core.errors import AnnotationError

PathLike = str | os.PathLike
DurationsArg = None | Mapping[str, float] | PathLike | Sequence[PathLike]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _readable(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A file that is not UTF-8 text, or JSON nested deeper than Python can parse, is an AnnotationError
    with one sentence (not a UnicodeDecodeError or RecursionError traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        name = Path(str(args[0])).name if args else "the file"
        try:
            return fn(*args, **kwargs)
        except UnicodeDecodeError:
            raise AnnotationError(f"{name} is not a text file (its bytes are not UTF-8); pass an annotation file "
                                  "(Charades-STA .txt, QVHighlights .jsonl or .json).") from None
        except RecursionError:
            raise AnnotationError(f"{name} nests its JSON too deeply to be an annotation file.") from None

    return wrapper


QVH_CLIP_SECONDS = 2.0  # QVHighlights saliency is annotated per 2-second clip


@dataclass
class AnnotatedQuery:
    """One natural-language query with its ground-truth windows (seconds)."""

    qid: Any  # the file's query id (QVHighlights) or a stable id made from file order
    vid: str  # video id or file name
    query: str  # the query sentence
    duration: float | None  # video duration in seconds, when known
    windows: list[tuple[float, float]]  # ground-truth (start, end) windows
    relevant_clip_ids: list[int] | None = None  # QVHighlights: indices of the 2 s clips rated for saliency
    saliency_scores: list[list[float]] | None = None  # QVHighlights: per relevant clip, one score per rater (0-4)
    extra: dict = field(default_factory=dict)  # anything else the file carried (e.g. source line)


# --- durations ------------------------------------------------------------------------------
def read_charades_durations(*csv_paths: PathLike) -> dict[str, float]:
    """Video durations (seconds) from Charades v1 metadata csv files (columns `id` and `length`)."""
    out: dict[str, float] = {}
    for p in csv_paths:
        p = Path(p)
        if not p.is_file():
            raise AnnotationError(f"durations file {p} does not exist; pass Charades_v1_train.csv / Charades_v1_test.csv.")
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "id" not in reader.fieldnames or "length" not in reader.fieldnames:
                raise AnnotationError(f"{p.name} line 1 has no `id` and `length` columns, so it is not a Charades metadata csv.")
            for row in reader:
                try:
                    out[row["id"]] = float(row["length"])
                except (TypeError, ValueError):
                    raise AnnotationError(
                        f"{p.name} line {reader.line_num} has a `length` that is not a number ({row.get('length')!r})."
                    ) from None
    return out


def _resolve_durations(durations: DurationsArg) -> dict[str, float] | None:
    if durations is None:
        return None
    if isinstance(durations, Mapping):
        return {str(k): float(v) for k, v in durations.items()}
    if isinstance(durations, (str, os.PathLike)):
        return read_charades_durations(durations)
    return read_charades_durations(*durations)


# --- Charades-STA -----------------------------------------------------------------------------
def read_charades_sta(path: PathLike, durations: DurationsArg = None) -> list[AnnotatedQuery]:
    """Read a Charades-STA txt file; with durations, clip ends and drop annotations with start >= end."""
    path = Path(path)
    dur = _resolve_durations(durations)
    out: list[AnnotatedQuery] = []
    with path.open(encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            head, sep, query = line.partition("##")
            parts = head.split()
            try:
                if not sep or len(parts) != 3 or not query.strip():
                    raise ValueError
                vid, start, end = parts[0], float(parts[1]), float(parts[2])
            except ValueError:
                raise AnnotationError(
                    f"{path.name} line {line_no} is not `VID START END##query`: {line[:60]!r}."
                ) from None
            duration = dur.get(vid) if dur is not None else None
            if duration is not None:
                end = min(end, duration)  # Otani et al.: end times beyond the video are clipped
                if start >= end:
                    continue  # ... and annotations that become empty are dropped
            out.append(
                AnnotatedQuery(qid=line_no, vid=vid, query=query.strip(), duration=duration,
                               windows=[(start, end)], extra={"line": line_no})
            )
    return out


# --- QVHighlights -------------------------------------------------------------------------------
def read_qvhighlights(path: PathLike) -> list[AnnotatedQuery]:
    """Read a QVHighlights jsonl annotation file (windows, clip ids and saliency scores as given)."""
    path = Path(path)
    out: list[AnnotatedQuery] = []
    with path.open(encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw)
                windows = [(float(w[0]), float(w[1])) for w in d.get("relevant_windows") or []]
                q = AnnotatedQuery(
                    qid=d["qid"], vid=str(d["vid"]), query=str(d["query"]),
                    duration=float(d["duration"]) if d.get("duration") is not None else None,
                    windows=windows,
                    relevant_clip_ids=[int(i) for i in d["relevant_clip_ids"]] if "relevant_clip_ids" in d else None,
                    saliency_scores=[[float(s) for s in row] for row in d["saliency_scores"]]
                    if "saliency_scores" in d else None,
                )
            except (ValueError, KeyError, TypeError, IndexError) as err:
                raise AnnotationError(
                    f"{path.name} line {line_no} is not a QVHighlights annotation ({_why(err)})."
                ) from None
            out.append(q)
    return out


class _Shape(ValueError):
    """What is wrong with an entry of an annotation file, in the words of its format (not Python's)."""


def _seconds(x: Any, what: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
        raise _Shape(f"{what} must be a number of seconds, got {json.dumps(x)[:40]}") from None
    if isinstance(x, bool) or not math.isfinite(value):
        raise _Shape(f"{what} must be a finite number of seconds, got {json.dumps(x)[:40]}")
    return value


def _gt_windows(gt: Any, q_idx: int) -> list[tuple[float, float]]:
    """A query's `gt`: one window [start, end] or several [[start, end], ...], each 0 <= start < end (a reversed or
    empty window would be scored 0 without a word)."""
    what = f"query {q_idx}'s `gt`"
    if not isinstance(gt, (list, tuple)):
        raise _Shape(f"{what} must be [start, end] in seconds, or a list of them")
    if not gt:
        return []  # a query with no relevant window (the metrics count it as a miss)
    wins = [gt] if not isinstance(gt[0], (list, tuple)) else gt
    out = []
    for w in wins:  # [start, end], or [start, end, score, ...] as some exports write it
        if not isinstance(w, (list, tuple)) or len(w) < 2:
            raise _Shape(f"{what} {json.dumps(w)[:40]} is not [start, end] in seconds")
        s, e = _seconds(w[0], f"{what} start"), _seconds(w[1], f"{what} end")
        if not 0 <= s < e:
            raise _Shape(f"{what} [{s:g}, {e:g}] is not a window: it needs 0 <= start < end")
        out.append((s, e))
    return out


def _why(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"missing key {err.args[0]!r}"
    if isinstance(err, json.JSONDecodeError):
        return f"invalid JSON: {err.msg}"
    if isinstance(err, ValueError):  # ours (_Shape), or a conversion that names the value ("could not convert 'two'")
        return str(err).rstrip(".")
    return "its structure is not the format's"  # Python's own words ("list index out of range") mean nothing here


# --- json formats (ActivityNet Captions, simple) --------------------------------------------------
def _entry_line(text: str, key: str) -> int:
    """Best-effort line number of a top-level key or video name in a JSON text (for error messages)."""
    idx = text.find(json.dumps(key))
    return text.count("\n", 0, idx) + 1 if idx >= 0 else 1


def read_activitynet_captions(path: PathLike, doc: Any = None, text: str | None = None) -> list[AnnotatedQuery]:
    """Read ActivityNet Captions json: one query per sentence, qid `VID#i`."""
    path = Path(path)
    if doc is None:
        text, doc = _load_json(path)
    out: list[AnnotatedQuery] = []
    for vid, entry in doc.items():
        try:
            duration = float(entry["duration"])
            stamps, sentences = entry["timestamps"], entry["sentences"]
            if len(stamps) != len(sentences):
                raise _Shape(f"{len(stamps)} timestamps but {len(sentences)} sentences")
            for i, (ts, sent) in enumerate(zip(stamps, sentences)):
                s, e = sorted((float(ts[0]), float(ts[1])))
                out.append(AnnotatedQuery(qid=f"{vid}#{i}", vid=str(vid), query=str(sent).strip(),
                                          duration=duration, windows=[(s, e)]))
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise AnnotationError(
                f"{path.name} line {_entry_line(text or '', vid)} (video {vid!r}) is not an ActivityNet Captions entry ({_why(err)})."
            ) from None
    return out


def read_simple_json(path: PathLike, doc: Any = None, text: str | None = None) -> list[AnnotatedQuery]:
    """Read the simple format `{"video", "duration", "queries": [{"query", "gt": [s, e]}]}` (or a list of them)."""
    path = Path(path)
    if doc is None:
        text, doc = _load_json(path)
    docs = doc if isinstance(doc, list) else [doc]
    out: list[AnnotatedQuery] = []
    for d_idx, d in enumerate(docs):
        try:
            if not isinstance(d, dict):
                raise _Shape("an entry must be an object {video, duration, queries}")
            vid = str(d["video"])
            duration = _seconds(d["duration"], "`duration`") if d.get("duration") is not None else None
            if not isinstance(d["queries"], list):
                raise _Shape("`queries` must be a list of {query, gt} objects")
            for q_idx, q in enumerate(d["queries"]):
                if not isinstance(q, dict):
                    raise _Shape(f"query {q_idx} must be an object {{query, gt}}")
                windows = _gt_windows(q["gt"], q_idx)
                qid = q.get("qid", f"{Path(vid).stem}#{q_idx}" if len(docs) > 1 else q_idx)
                out.append(AnnotatedQuery(qid=qid, vid=vid, query=str(q["query"]).strip(), duration=duration,
                                          windows=windows,
                                          extra={k: v for k, v in q.items() if k not in ("query", "gt", "qid")}))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            name = d.get("video") if isinstance(d, dict) else None
            line = _entry_line(text or "", name) if name else 1
            raise AnnotationError(
                f"{path.name} line {line} (document {d_idx}) is not a `video`/`duration`/`queries` entry ({_why(err)})."
            ) from None
    return out


def _load_json(path: Path) -> tuple[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path.name} line {err.lineno} is not valid JSON ({err.msg}).") from None


# --- format detection -----------------------------------------------------------------------------
FORMATS = ("charades-sta", "qvhighlights", "activitynet-captions", "simple")


@_readable
def detect_format(path: PathLike) -> str:
    """Guess the annotation format from the extension and, for .json, the document's shape."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "charades-sta"
    if suffix == ".jsonl":
        return "qvhighlights"
    if suffix == ".json":
        _, doc = _load_json(path)
        return _json_kind(path, doc)
    raise AnnotationError(
        f"{path.name} has an unknown annotation extension; use .txt (Charades-STA), .jsonl (QVHighlights) or .json."
    )


def _json_kind(path: Path, doc: Any) -> str:
    if isinstance(doc, dict) and "queries" in doc:
        return "simple"
    if isinstance(doc, list) and doc and all(isinstance(d, dict) and "queries" in d for d in doc):
        return "simple"
    if isinstance(doc, dict) and doc and all(isinstance(v, dict) and "timestamps" in v for v in doc.values()):
        return "activitynet-captions"
    raise AnnotationError(
        f"{path.name} line 1 is neither ActivityNet Captions json nor the simple `video`/`queries` format."
    )


@_readable
def load_annotations(path: PathLike, durations: DurationsArg = None) -> list[AnnotatedQuery]:
    """Read any supported annotation file (format detected); `durations` applies to Charades-STA.

    `durations` is a mapping video id -> seconds, or one or more Charades v1 metadata csv paths.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} does not exist.")
    kind = detect_format(path)
    if kind == "charades-sta":
        return read_charades_sta(path, durations)
    if kind == "qvhighlights":
        return read_qvhighlights(path)
    text, doc = _load_json(path)
    if _json_kind(path, doc) == "simple":
        return read_simple_json(path, doc, text)
    return read_activitynet_captions(path, doc, text)


def iter_jsonl(path: PathLike) -> Iterable[tuple[int, dict]]:
    """Yield (line number, object) for each non-empty line of a jsonl file; bad lines raise AnnotationError."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"file {path} does not exist.")
    with path.open(encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise AnnotationError(f"{path.name} line {line_no} is not valid JSON ({err.msg}).") from None
            if not isinstance(obj, dict):
                raise AnnotationError(f"{path.name} line {line_no} is not a JSON object.")
            yield line_no, obj


@_readable
def read_predictions(path: PathLike) -> list[dict]:
    """Read a predictions jsonl (`qid` and/or `vid`+`query`, `pred_relevant_windows` [[s, e, score], ...]
    in rank order, optional `pred_saliency_scores`); windows are checked, scores default to rank order."""
    path = Path(path)
    out: list[dict] = []
    for line_no, d in iter_jsonl(path):
        try:
            wins = d["pred_relevant_windows"]
            checked = []
            for rank, w in enumerate(wins):
                s, e = float(w[0]), float(w[1])
                score = float(w[2]) if len(w) > 2 else -float(rank)  # no score: keep the rank order
                checked.append([s, e, score])
            d = dict(d)
            d["pred_relevant_windows"] = checked
            if "pred_saliency_scores" in d:
                d["pred_saliency_scores"] = [float(x) for x in d["pred_saliency_scores"]]
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise AnnotationError(
                f"{path.name} line {line_no} is not a prediction with `pred_relevant_windows` [[start, end, score], ...] ({_why(err)})."
            ) from None
        out.append(d)
    return out
