"""A video library: moment search over many videos ("video corpus moment retrieval").

- Catalogue: an SQLite database (standard library `sqlite3`) with one row per video file: its path, size and
  modification time (what tells a changed file), content hash, duration, encoder, fps, status ("ok" or
  "error" with the one-sentence reason) and number of clips. Each file is committed in its own transaction,
  so Ctrl-C leaves a consistent library and a re-run goes on where it stopped; unchanged files are not
  encoded again. Frame features live in the feature cache (`features.encode_video`).
- First stage: a faiss index over clip vectors (the mean of a video's frame features over windows of
  CLIP_SECONDS, half overlapping, L2-normalised): exact inner product (`IndexFlatIP`) up to FLAT_MAX_ROWS
  rows (a million), HNSW above. The index file carries the library's version (a digest of the catalogue); an index that is
  missing, unreadable or of another version is rebuilt from the catalogue and the feature cache, never served.
- Second stage: the candidate videos (those of the best clips) go through the zero-shot moment scorer of
  `retrieval.engine.retrieve`; each video's moments keep the scorer's order, and moments from different videos
  are placed by the best first-stage clip cosine inside them (one scale for every video, the first stage's).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from backends.core.contracts import ProgressFn, StopFn, check_query
from backends.core.errors import CancelledError, MomentLensError, VideoError
from backends.core.paths import cache_dir
from backends.io.atomic import written_whole
from backends.io.locks import exclusive_lock
from backends.io.video import VIDEO_EXTENSIONS, is_video_name, list_videos
from backends.retrieval import confidence as conf

if TYPE_CHECKING:
    from backends.features import VideoFeatures

log = logging.getLogger(__name__)

CLIP_SECONDS = 4.0  # first-stage unit: windows of this length, half overlapping
# Exact search up to here (measured: 14 ms per query over 100k 384-d clips on 2 cores), HNSW above.
FLAT_MAX_ROWS = 1_000_000
# HNSW graph degree and beam widths: faiss's default search beam (16) recalled 10 % of the exact top-10 on 100k
# random 384-d vectors, 512 recalled 68 %, 1024 recalled 91 % at 5 ms (random vectors are its hardest case)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 1024
# A hit fits the query clearly when the query fits its best clip better than every one of the unrelated everyday
# descriptions (`hit_confidence` = 1). Chosen with benchmarks/library.py (its "hit confidence" lines print the share
# found at 0.9 and at this level): over its 201-video library, 0.9 said "found" for about 60 % of queries of things the
# library shows (realmix_dev's 8, the retrieval benchmark's 44) and a third of TUNING_ABSENT_QUERIES (things it does
# not show); 1.0 for about 37 % and 12 %. With the bundled encoder (ImageNet concepts) a lion or a whale comes close
# to a cartoon rabbit or a tree, so no level separates them well (query-level AUC about 0.7): "found" is a strict
# claim and its absence only a caveat.
FOUND_LEVEL = 1.0
# what a hit's confidence means, in the words the front ends show beside it
CONFIDENCE_MEANING = (f"the share of {len(conf.NULL_QUERIES)} unrelated everyday descriptions that fit the moment "
                      "less well than the query")
SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    path TEXT PRIMARY KEY,      -- resolved absolute path, as indexed
    size INTEGER, mtime_ns INTEGER,
    content_hash TEXT, duration REAL, clips INTEGER,
    status TEXT NOT NULL,       -- ok | error
    reason TEXT,                -- the one-sentence reason of an error
    added REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# Every change to the catalogue, by any process or version of this code that opened it since, bumps meta
# "generation": a search compares one number instead of digesting the whole catalogue to know its index is current.
_BUMP = ("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', "
         "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'), 0) + 1)")
GENERATION_TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS videos_{event.lower()} AFTER {event} ON videos BEGIN {_BUMP}; END;\n"
    for event in ("INSERT", "UPDATE", "DELETE"))
# Loaded indexes, kept between searches (reading a 100k-clip index anew costs more than searching it:
# benchmarks/library.py): library folder -> (stamp, index, rows); the stamp (`Library._index_stamp`) changes
# with the catalogue and with the index files.
_LOADED: dict[str, tuple[tuple[Any, ...], Any, dict[str, np.ndarray]]] = {}
_LOADED_LOCK = threading.Lock()
LOADED_MAX = 4  # libraries kept loaded at once (a 100k-clip one holds ~150 MB)
_REBUILDING: dict[str, threading.Lock] = {}  # library folder -> the lock of a search's rebuild in this process


class LibraryError(MomentLensError):
    """The library cannot do what was asked (another encoder, an empty library, ...)."""


def library_dir() -> Path:
    """`$MOMENTLENS_LIBRARY`, default `<cache>/library`."""
    env = os.environ.get("MOMENTLENS_LIBRARY")
    return Path(env).expanduser() if env else cache_dir() / "library"


def existing_library(folder: str | os.PathLike | None, *, empty_ok: bool = False) -> Library:
    """The library of a search or an edit: a folder given that holds no library.sqlite is a typo (or a video folder
    given by mistake), said in one sentence, not an empty library created on the spot. `None` is the default
    library, which may not exist yet (its search then says it is empty). `empty_ok`: an empty folder is where a
    new library starts (the app's Library tab adds to it)."""
    if folder is not None:
        p = Path(folder).expanduser()
        fresh = empty_ok and p.is_dir() and not any(p.iterdir())
        if not str(folder).strip() or not ((p / "library.sqlite").is_file() or fresh):
            what = ("is not a folder" if p.exists() and not p.is_dir() else
                    "holds no library" if p.is_dir() else "does not exist")
            if not str(folder).strip():
                raise LibraryError("the library path is empty: give a library's folder, or leave it out for the "
                                   "default library.")
            raise LibraryError(f"{folder} {what} (no library.sqlite in it): check the path, or build one with "
                               f"`momentlens index add VIDEOS --library {folder}`.")
    return Library(folder)


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)  # encoded now (new or changed files)
    unchanged: list[str] = field(default_factory=list)  # already in the library, not encoded again
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, one-sentence reason)
    seconds: float = 0.0
    ray: dict[str, Any] | None = None  # with --ray: {"encoded", "failed", "nodes"} of the Ray job
    index: str = "kept"  # what happened to the clip index: kept | appended (new files only) | rebuilt
    dropped: list[str] = field(default_factory=list)  # catalogued files of the added folders gone from disk

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": [{"file": f, "reason": r} for f, r in self.skipped]}


@dataclass
class LibraryHit:
    video: str  # the path that was indexed
    start: float
    end: float
    score: float  # the best query cosine of a 4 s index clip inside [start, end] (comparable across videos)
    video_rank: int  # rank of the video in the first stage (1 = the best clip)
    # the share of unrelated everyday descriptions (confidence.NULL_QUERIES) that fit the hit's best clip less well
    # than the query does (`hit_confidence`): 0 to 1, comparable across videos
    confidence: float = 0.0
    clip: int = -1  # the index clip that stands for it (`moment_clip`; -1: unknown): one clip, one place

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(float(self.score), 6), "confidence": round(float(self.confidence), 3),
                "video_rank": self.video_rank}


@dataclass
class SearchResult:
    query: str
    encoder: str
    results: list[LibraryHit]
    candidates: list[str]  # the videos the second stage scored, best first
    index_rebuilt: bool = False  # the stored index was missing, stale or corrupt and was rebuilt
    # indexed videos the first stage chose whose files are gone from disk: left out (`momentlens index rebuild`
    # or `index add` of their folder drops them from the library)
    missing: list[str] = field(default_factory=list)
    # indexed videos the first stage chose that changed on disk since they were indexed, or cannot be decoded now:
    # (path, one-sentence reason), left out rather than answered from what they held before
    left_out: list[tuple[str, str]] = field(default_factory=list)

    @property
    def best_confidence(self) -> float | None:
        return max(h.confidence for h in self.results) if self.results else None

    @property
    def found(self) -> bool:
        """Whether the best hit fits the query clearly (confidence >= FOUND_LEVEL: better than every unrelated
        description); False: the library may not hold what was asked, and the hits may be only the nearest things."""
        best = self.best_confidence
        return best is not None and best >= FOUND_LEVEL

    def caveat(self) -> str | None:
        """One sentence when the library may not hold what was asked (not `found`), else None."""
        best = self.best_confidence
        if best is None or self.found:
            return None
        return (f"For no moment does the query fit better than all {len(conf.NULL_QUERIES)} unrelated descriptions "
                f"do (best confidence {best:.2f}): the library may not hold it, and these may be only the nearest "
                "things in it.")

    def notes(self) -> list[str]:
        """The sentences every front end shows above the hits: the caveat, then the missing files' note."""
        return [n for n in (self.caveat(), self.missing_note(), self.left_out_note()) if n]

    def missing_note(self) -> str | None:
        """One sentence when videos of the library are gone from disk and were left out, else None."""
        if not self.missing:
            return None
        names = ", ".join(Path(m).name for m in self.missing[:3]) + (" ..." if len(self.missing) > 3 else "")
        return (f"{len(self.missing)} indexed video(s) are gone from disk and were left out ({names}): "
                "`momentlens index rebuild` takes them out of the index (`index stats` lists them as gone), "
                "`index remove PATH` forgets one.")

    def left_out_note(self) -> str | None:
        """One sentence when videos were left out because they changed since indexing or cannot be read, else None."""
        if not self.left_out:
            return None
        first, why = self.left_out[0]
        more = f" and {len(self.left_out) - 1} more" if len(self.left_out) > 1 else ""
        return (f"{Path(first).name}{more} left out: {why} `momentlens index add` of its folder indexes what it "
                "holds now (`index remove PATH` forgets it).")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "encoder": self.encoder, "found": self.found,
                               "results": [h.to_dict() for h in self.results]}
        if caveat := self.caveat():
            out["caveat"] = caveat
        if self.missing:
            out["missing"] = list(self.missing)
        if self.left_out:
            out["left_out"] = [{"video": v, "reason": r} for v, r in self.left_out]
        return out


def clip_vectors(feats: VideoFeatures, seconds: float = CLIP_SECONDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors (M, D) unit rows, starts (M,), ends (M,)): mean frame features over half-overlapping windows."""
    times, f = feats.times, feats.features
    if len(times) == 0:
        return np.zeros((0, f.shape[1]), np.float32), np.zeros(0), np.zeros(0)
    duration = max(feats.duration, float(times[-1]) + 1e-3)
    starts = np.arange(0.0, max(duration - seconds, 0.0) + 1e-9, seconds / 2)
    vecs, s_out, e_out = [], [], []
    for s in starts:
        e = min(s + seconds, duration)
        inside = (times >= s) & (times < e)
        if not inside.any():
            continue
        v = f[inside].mean(axis=0)
        vecs.append(v / max(float(np.linalg.norm(v)), 1e-12))
        s_out.append(s)
        e_out.append(e)
    return np.asarray(vecs, np.float32).reshape(-1, f.shape[1]), np.asarray(s_out), np.asarray(e_out)


def catalogue_path(path: str | os.PathLike) -> Path:
    """The path a video is catalogued (and searched, and removed) under: absolute, as the user reached it. A link is
    not replaced by its target, so that deleting the link takes the video out of its folder's library."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _writer_lock(folder: Path) -> AbstractContextManager[None]:
    """Hold the library's writer lock (one `index add` / `remove` at a time on a library: a second one waits,
    instead of encoding the same files again or interleaving its index with the first one's)."""
    return exclusive_lock(folder / ".writer.lock", on_busy=lambda: log.warning(
        "another `index add` or `index remove` is working on %s; waiting for it to finish", folder))


class Library:
    """One library folder: `library.sqlite` (the catalogue) and `clips.faiss` + `clips.npz` (the index)."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else library_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.folder / "library.sqlite"
        self.index_path = self.folder / "clips.faiss"
        self.rows_path = self.folder / "clips.npz"
        with self._db() as db:
            db.executescript(SCHEMA)
            if not self._has_triggers(db):
                try:
                    db.executescript(GENERATION_TRIGGERS)
                except sqlite3.OperationalError:  # a catalogue this user may only read: no writer can change it
                    pass

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as db:
                db.row_factory = sqlite3.Row
                with db:  # one transaction: committed on success, rolled back on an exception
                    yield db
        except sqlite3.DatabaseError as err:  # truncated, overwritten, not a database, a folder of that name
            raise LibraryError(f"the library catalogue {self.db_path} cannot be read ({err}): move it away and run "
                               "`momentlens index add` on your folders again (features already computed are reused "
                               "from the cache).") from None

    @staticmethod
    def _has_triggers(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN "
                          "('videos_insert', 'videos_update', 'videos_delete')").fetchone()[0] == 3

    def _meta(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _set_meta(self, db: sqlite3.Connection, key: str, value: str | None) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def encoder(self) -> str | None:
        return self._meta("encoder")

    @property
    def fps(self) -> float:
        return float(self._meta("fps") or 1.0)

    # --- catalogue ----------------------------------------------------------------------------------
    def add(self, paths: Sequence[str | os.PathLike], *, encoder: str | None = None, fps: float = 1.0,
            progress: ProgressFn | None = None, should_stop: StopFn | None = None,
            show_progress: bool | None = None, ray: str | None = None) -> AddReport:
        """Encode and catalogue the videos of `paths` (folders searched recursively); files already there and
        unchanged are skipped; unreadable ones are recorded with their reason. Rebuilds the index at the end.
        `ray` ("local" or a cluster address) encodes the new files on Ray (`retrieval.distributed`) first."""
        for p in paths:
            why = _unusable_path(p)
            if why:
                raise LibraryError(f"{why}: check the path (nothing was added).")
        with _writer_lock(self.folder):
            return self._add(paths, encoder, fps, progress, should_stop, show_progress, ray)

    def _add(self, paths: Sequence[str | os.PathLike], encoder: str | None, fps: float, progress: ProgressFn | None,
             should_stop: StopFn | None, show_progress: bool | None, ray: str | None) -> AddReport:
        t0 = time.perf_counter()
        files, skipped = _expand(paths)
        name = self._check_encoder(encoder, fps)
        report = AddReport(skipped=skipped)
        gone = self._gone_under(paths)
        if gone:  # a re-added folder's files that are gone from disk leave the catalogue (one rebuild at the end)
            self._forget(gone)
            report.dropped = gone
        if ray is not None:
            report.ray = self._encode_on_ray(files, name, fps, ray)  # fills the feature cache; the loop reads it
        # deferred: torch, about 1.3 s of import that `index stats|list|remove` must not pay
        from backends.encoders import cached_encoder  # noqa: PLC0415
        from backends.features import encode_video  # noqa: PLC0415 - deferred: see _add

        enc = cached_encoder(name)
        # new files can be appended to a current exact index; a changed file means rebuilding it
        appendable = self._index_current() and self._index_kind() == "flat"
        appended: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # (path, vectors, starts, ends)
        bar = tqdm(total=len(files), unit="video", desc="indexing", leave=False,
                   disable=not (sys.stderr.isatty() if show_progress is None else show_progress))
        i = 0
        try:
            for i, path in enumerate(files):
                if should_stop is not None and should_stop():
                    raise CancelledError(f"indexing stopped after {i} of {len(files)} files; run it again to go on.")
                st = path.stat()
                row = self._row(path)
                if row is not None and not self._changed(row, st):
                    if row["status"] == "ok":
                        report.unchanged.append(str(path))
                    else:
                        report.skipped.append((str(path), "unchanged since it failed to decode"))
                else:
                    values: tuple[Any, ...]
                    try:
                        feats = encode_video(path, enc, fps=fps, show_progress=False)
                        vectors, starts, ends = clip_vectors(feats)
                        values = (str(path), st.st_size, st.st_mtime_ns, feats.content_hash, feats.duration, len(vectors),
                                  "ok", None, time.time())
                        report.added.append(str(path))
                        appended.append((str(path), vectors, starts, ends))
                        appendable = appendable and row is None  # a changed file's old clips are in the index
                    except VideoError as err:
                        values = (str(path), st.st_size, st.st_mtime_ns, None, None, 0, "error", str(err), time.time())
                        report.skipped.append((str(path), str(err)))
                    with self._db() as db:  # one transaction per file
                        db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                        self._set_meta(db, "version", None)  # the index no longer matches
                bar.update(1)
                if progress is not None:
                    progress((i + 1) / max(len(files), 1), f"indexed {i + 1} of {len(files)} videos")
        except KeyboardInterrupt:  # Ctrl-C: every file finished is in the catalogue (one transaction per file)
            log.warning("indexing stopped after %d of %d files (%d added, kept); run the same command again to go on.",
                        i, len(files), len(report.added))
            raise
        finally:
            bar.close()
        if report.added and appendable:
            self._append(appended)
            report.index = "appended"
        elif report.added or not self._index_current():
            self.rebuild()
            report.index = "rebuilt"
        report.seconds = time.perf_counter() - t0
        return report

    def _catalogued_under(self, roots: Sequence[Path]) -> list[str]:
        """Catalogued videos (any status) that are one of `roots` or lie inside one of them."""
        out = []
        for v in self.videos(None):
            path = Path(v["path"])
            if any(path == r or r in path.parents for r in roots):
                out.append(v["path"])
        return out

    def _gone_under(self, paths: Sequence[str | os.PathLike]) -> list[str]:
        """Catalogued videos inside the folders of `paths` (or equal to a file of them) whose files are gone."""
        # only the videos under `paths` are looked up on disk
        return [v for v in self._catalogued_under([catalogue_path(p) for p in paths]) if not Path(v).is_file()]

    def _forget(self, paths: Sequence[str]) -> int:
        """Delete catalogued videos (one transaction; the index is then out of date): how many there were."""
        with self._db() as db:
            n = sum(db.execute("DELETE FROM videos WHERE path = ?", (path,)).rowcount for path in paths)
            if n:
                self._set_meta(db, "version", None)
        return n

    def _catalogue_rows(self, paths: set[str]) -> dict[str, sqlite3.Row]:
        """The usable ("ok") catalogue rows of `paths` (a search's candidates), by path."""
        found: dict[str, sqlite3.Row] = {}
        ordered = sorted(paths)
        with self._db() as db:
            for i in range(0, len(ordered), 500):  # under SQLite's limit on query parameters
                chunk = ordered[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for row in db.execute(f"SELECT path, size, mtime_ns FROM videos WHERE status = 'ok' AND path IN ({marks})",
                                      chunk):
                    found[row["path"]] = row
        return found

    def _row(self, path: Path) -> sqlite3.Row | None:
        with self._db() as db:
            return db.execute("SELECT size, mtime_ns, status FROM videos WHERE path = ?", (str(path),)).fetchone()

    @staticmethod
    def _changed(row: sqlite3.Row | dict[str, Any] | None, st: os.stat_result) -> bool:
        """Whether a file is new to the catalogue or changed since (size or modification time)."""
        return row is None or row["size"] != st.st_size or row["mtime_ns"] != st.st_mtime_ns

    def _encode_on_ray(self, files: list[Path], encoder: str, fps: float, address: str) -> dict[str, Any]:
        from backends.retrieval.distributed import encode_on_ray  # noqa: PLC0415 - Ray is optional

        todo = [path for path in files if self._changed(self._row(path), path.stat())]
        rows = encode_on_ray(todo, encoder, fps, cache_dir(), address)
        failed = [r for r in rows if r["status"] != "ok"]
        nodes = sorted({r["node"] for r in rows})
        log.info("ray encoded %d files (%d failed) on %d node(s)", len(rows), len(failed), len(nodes))
        return {"encoded": len(rows) - len(failed), "failed": len(failed), "nodes": nodes}

    def _check_encoder(self, encoder: str | None, fps: float) -> str:
        from backends.encoders import canonical_encoder_name, default_encoder_name  # noqa: PLC0415 - deferred: see _add

        name = canonical_encoder_name(encoder or self.encoder or default_encoder_name())
        if not fps > 0:
            raise LibraryError(f"fps must be positive, got {fps}.")
        if self.encoder is not None and (self.encoder != name or abs(self.fps - fps) > 1e-9) and self._holds_videos():
            raise LibraryError(f"this library was built with {self.encoder} at {self.fps:g} fps; add with the same "
                               "encoder and --fps, or use another library folder (--library DIR).")
        with self._db() as db:
            self._set_meta(db, "encoder", name)
            self._set_meta(db, "fps", repr(float(fps)))
        return name

    def _holds_videos(self) -> bool:
        """Whether anything is catalogued (a first add that failed or was stopped before its first file does not bind
        the library to its encoder and fps)."""
        with self._db() as db:
            return db.execute("SELECT 1 FROM videos LIMIT 1").fetchone() is not None

    def videos(self, status: str | None = "ok") -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM videos" + (" WHERE status = ?" if status else "") + " ORDER BY path",
                              (status,) if status else ()).fetchall()
        return [dict(r) for r in rows]

    def _usable_count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM videos WHERE status = 'ok'").fetchone()[0])

    def remove(self, path: str | os.PathLike) -> int:
        """Drop a video, or every video under a folder, from the library (their cached features stay in the feature
        cache); rebuilds the index. Returns how many videos were dropped."""
        with _writer_lock(self.folder):
            # catalogued before paths were kept as given (a link under its target's path): found by the target
            under = (self._catalogued_under([catalogue_path(path)])
                     or self._catalogued_under([Path(path).expanduser().resolve()]))
            if not self._forget(under):
                raise LibraryError(f"{path} is not in the library, nor any video under it (`momentlens index list` "
                                   "lists what is).")
            self.rebuild()
        return len(under)

    def stats(self) -> dict[str, Any]:
        ok, errors = self.videos("ok"), self.videos("error")
        rows = 0
        kind = None
        if self.rows_path.is_file():
            try:
                with np.load(self.rows_path) as z:
                    rows, kind = int(len(z["video"])), str(z["kind"])
            except (OSError, ValueError, KeyError):
                pass
        size = sum(p.stat().st_size for p in (self.index_path, self.rows_path) if p.is_file())
        return {"folder": str(self.folder), "encoder": self.encoder, "fps": self.fps, "videos": len(ok),
                "errors": [{"file": e["path"], "reason": e["reason"]} for e in errors],
                "hours": round(sum(v["duration"] or 0 for v in ok) / 3600, 4), "clips": rows, "index": kind,
                "index_current": self._index_current(), "index_bytes": size}

    # --- index ----------------------------------------------------------------------------------------
    def _version(self, videos: Sequence[dict[str, Any]] | None = None) -> str:
        """A digest of the catalogue's usable videos (or of `videos`, those an index was built from): an index is
        current when the digest it was written under is the catalogue's now."""
        digest = hashlib.sha1(f"{self.encoder}|{self.fps}|{CLIP_SECONDS}".encode())
        for v in sorted(self.videos("ok") if videos is None else videos, key=lambda v: v["path"]):
            digest.update(f"|{v['path']}:{v['content_hash']}".encode())
        return digest.hexdigest()[:16]

    def _index_current(self) -> bool:
        return self._meta("version") == self._version() and self.index_path.is_file() and self.rows_path.is_file()

    def rebuild(self) -> int:
        """Build the clip index from the catalogue and the feature cache (encoding what the cache lost);
        returns the number of clips. Written to temporary files, then renamed: a reader never sees half."""
        import faiss  # noqa: PLC0415 - deferred: faiss is only needed by libraries

        name = self.encoder
        videos = self.videos("ok")
        gone = [v["path"] for v in videos if not Path(v["path"]).is_file()]
        if gone:
            self._mark_gone(gone)
            videos = self.videos("ok")
        if name is None or not videos:
            for p in (self.index_path, self.rows_path):
                p.unlink(missing_ok=True)
            return 0
        from backends.encoders import cached_encoder  # noqa: PLC0415 - deferred: see _add
        from backends.features import encode_video  # noqa: PLC0415 - deferred: see _add

        enc = cached_encoder(name)
        vecs, vid, starts, ends = [], [], [], []
        for k, v in enumerate(videos):
            st = Path(v["path"]).stat()
            feats = encode_video(v["path"], enc, fps=self.fps, show_progress=False)
            x, s, e = clip_vectors(feats)
            if self._changed(v, st):  # changed on disk since it was catalogued: the catalogue learns what it holds now
                with self._db() as db:
                    db.execute("UPDATE videos SET size = ?, mtime_ns = ?, content_hash = ?, duration = ?, clips = ? "
                               "WHERE path = ?", (st.st_size, st.st_mtime_ns, feats.content_hash, feats.duration,
                                                  len(x), v["path"]))
                v.update(content_hash=feats.content_hash)
            vecs.append(x)
            vid.append(np.full(len(x), k))
            starts.append(s)
            ends.append(e)
        matrix = np.ascontiguousarray(np.concatenate(vecs).astype(np.float32))
        dim = matrix.shape[1]
        index: Any
        if len(matrix) <= FLAT_MAX_ROWS:
            index, kind = faiss.IndexFlatIP(dim), "flat"
        else:
            index, kind = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT), "hnsw"
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(matrix)
        self._write_index(index, {"video": np.concatenate(vid), "start": np.concatenate(starts),
                                  "end": np.concatenate(ends), "paths": np.array([v["path"] for v in videos])}, kind,
                          self._version(videos))
        log.info("library index: %d clips of %d videos (%s)", len(matrix), len(videos), kind)
        return len(matrix)

    def _mark_gone(self, paths: Sequence[str]) -> None:
        """Record catalogued videos whose files are gone from disk (status "error", so that `stats` lists them and
        the index leaves them out; `index add` of the file again, if it comes back, encodes it anew)."""
        with self._db() as db:
            for path in paths:
                db.execute("UPDATE videos SET status = 'error', reason = ?, size = -1 WHERE path = ?",
                           (f"{Path(path).name} is gone from disk (moved or deleted since it was indexed).", path))
            self._set_meta(db, "version", None)
        log.warning("%d indexed video(s) gone from disk: left out of the library index", len(paths))

    def _write_index(self, index: Any, rows: dict[str, np.ndarray], kind: str, version: str) -> None:
        """Write the index and its rows under `version` (that of the videos it was built from: a video another
        process catalogued meanwhile makes it stale, so the next search rebuilds it), each to a temporary file
        renamed into place (a reader never sees half), then record that version."""
        import faiss  # noqa: PLC0415 - deferred: see rebuild

        arrays: dict[str, Any] = {**rows, "version": np.array(version), "kind": np.array(kind)}
        # the app's threads write too: each writer has temporary names of its own (io.atomic)
        with written_whole(self.index_path) as tmp_index, written_whole(self.rows_path, ".tmp.npz") as tmp_rows:
            faiss.write_index(index, str(tmp_index))
            np.savez(tmp_rows, **arrays)
        with self._db() as db:
            self._set_meta(db, "version", version)

    def _index_kind(self) -> str | None:
        try:
            with np.load(self.rows_path) as z:
                return str(z["kind"])
        except (OSError, ValueError, KeyError):
            return None

    def _append(self, new: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Add the clips of new videos to the stored exact index (instead of re-reading every video's features)."""
        import faiss  # noqa: PLC0415 - deferred: see rebuild

        index = faiss.read_index(str(self.index_path))
        with np.load(self.rows_path) as z:
            rows = {k: z[k] for k in ("video", "start", "end", "paths")}
        paths = list(rows["paths"])
        for path, vectors, starts, ends in new:
            index.add(np.ascontiguousarray(vectors, np.float32))
            rows["video"] = np.concatenate([rows["video"], np.full(len(vectors), len(paths))])
            rows["start"] = np.concatenate([rows["start"], starts])
            rows["end"] = np.concatenate([rows["end"], ends])
            paths.append(path)
        rows["paths"] = np.array(paths)
        indexed = set(paths)
        self._write_index(index, rows, "flat", self._version([v for v in self.videos("ok") if v["path"] in indexed]))
        log.info("library index: %d clips of %d new videos appended", sum(len(v) for _, v, _, _ in new), len(new))

    def _index_stamp(self) -> tuple[Any, ...] | None:
        """What changes whenever the catalogue or the index files change (the catalogue's generation and recorded
        version, the files' identity, size and modification time); None when it cannot tell (no index files, or
        a catalogue without the generation triggers, e.g. one this user may only read, made by an older version)."""
        try:
            files = tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                          for st in (self.index_path.stat(), self.rows_path.stat()))
        except OSError:
            return None
        with self._db() as db:
            if not self._has_triggers(db):
                return None
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'version')").fetchall())
        return meta.get("generation"), meta.get("version"), files

    def _load_index(self) -> tuple[Any, dict[str, np.ndarray], bool]:
        """(faiss index, rows, rebuilt): the stored index when it is readable and current, else a rebuilt one.
        An index loaded before is served from memory while its stamp holds (`_LOADED`). Threads that find it
        stale rebuild it one at a time (the first rebuilds, the others then find it current)."""
        key = str(self.folder.resolve())
        served = self._current_index(key)
        if isinstance(served, tuple):
            return (*served, False)
        with _LOADED_LOCK:
            lock = _REBUILDING.setdefault(key, threading.Lock())
        with lock:
            again = self._current_index(key)
            if isinstance(again, tuple):  # another thread rebuilt it meanwhile
                return (*again, True)
            log.warning("the library index in %s is not served: %s; rebuilding it", self.folder, again)
            if self.rebuild():
                rebuilt = self._current_index(key)
                if isinstance(rebuilt, tuple):
                    return (*rebuilt, True)
        raise LibraryError("the library is empty: add videos first (`momentlens index add FOLDER`).")

    def _current_index(self, key: str) -> tuple[Any, dict[str, np.ndarray]] | str:
        """(index, rows) when the stored index is readable and current (from memory while its stamp holds), else
        why it is not."""
        import faiss  # noqa: PLC0415 - deferred: see rebuild

        stamp = self._index_stamp()
        with _LOADED_LOCK:
            kept = _LOADED.get(key)
        if stamp is not None and kept is not None and kept[0] == stamp:
            return kept[1], kept[2]
        try:
            with np.load(self.rows_path) as z:
                rows = {k: z[k] for k in ("video", "start", "end", "paths", "version")}
            index = faiss.read_index(str(self.index_path))
        except (OSError, ValueError, KeyError, RuntimeError, EOFError) as err:  # missing, truncated, not faiss
            return f"it cannot be read ({type(err).__name__})"
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = HNSW_EF_SEARCH
        if not (str(rows["version"]) == self._meta("version") == self._version() and index.ntotal == len(rows["video"])):
            return "it does not match the catalogue"
        with _LOADED_LOCK:
            if stamp is not None and stamp == self._index_stamp():  # nothing changed while it loaded
                _LOADED.pop(key, None)
                _LOADED[key] = (stamp, index, rows)
                while len(_LOADED) > LOADED_MAX:  # the least recently loaded goes first
                    _LOADED.pop(next(iter(_LOADED)))
            else:
                _LOADED.pop(key, None)
        return index, rows

    # --- search ---------------------------------------------------------------------------------------
    def search(self, query: str, *, top_k: int = 10, videos: int = 10, nms_threshold: float = 0.5) -> SearchResult:
        """The best moments for `query` across the library: the clips closest to the query pick `videos`
        candidate videos; each goes through the moment scorer; moments are placed across videos by their best
        clip cosine (`moment_clip`), each with its `hit_confidence`."""
        text = check_query(query)
        if top_k < 1 or videos < 1:
            raise LibraryError("--top-k and --videos must be at least 1.")
        if self.encoder is None or not self._usable_count():  # (only unreadable files: nothing to index either)
            raise LibraryError("the library is empty: add videos first (`momentlens index add FOLDER`).")
        from backends.encoders import cached_encoder  # noqa: PLC0415 - deferred: see _add
        from backends.retrieval.engine import retrieve  # noqa: PLC0415 - deferred: see _add

        index, rows, rebuilt = self._load_index()
        enc = cached_encoder(self.encoder)
        q = np.asarray(enc.encode_text([text]), np.float32).reshape(1, -1)
        bank = conf.null_bank(enc)
        k = int(min(index.ntotal, max(50 * videos, 200)))
        _, found = index.search(q, k)
        order: list[int] = []
        missing: list[str] = []
        left_out: list[tuple[str, str]] = []
        seen: set[int] = set()
        catalogue = self._catalogue_rows({str(rows["paths"][int(rows["video"][r])]) for r in found[0] if r >= 0})
        for row in found[0]:
            if row < 0:
                continue
            v = int(rows["video"][row])
            path = str(rows["paths"][v])
            if v in seen:
                continue
            seen.add(v)
            if not Path(path).is_file():  # moved or deleted since it was indexed: nothing to score or play
                missing.append(path)
                continue
            if path not in catalogue:  # removed from the library since this index was loaded: not an answer
                continue
            if self._changed(catalogue[path], Path(path).stat()):
                # the index holds what the file was: answering from it would show moments of another video
                left_out.append((path, "it changed on disk since it was indexed."))
                continue
            order.append(v)
            if len(order) == videos:
                break
        hits: list[LibraryHit] = []
        candidates: list[str] = []
        for v in order:
            path = str(rows["paths"][v])
            # the library ranks by clip cosine across videos; per-video confidences are not needed (and their
            # null, 48 queries per video, would be recomputed for every candidate: most of a search's time)
            try:
                result = retrieve(path, text, encoder=enc, top_k=2 * top_k, nms_threshold=nms_threshold, fps=self.fps,
                                  confidence=False)
            except VideoError as err:  # one unreadable file never stops the search of the others
                left_out.append((path, f"it cannot be read now ({str(err).rstrip('.')})."))
                continue
            candidates.append(path)
            rank = len(candidates)
            mine = np.nonzero(rows["video"] == v)[0]
            vecs = index.reconstruct_batch(mine)
            clip_cos = vecs @ q[0]
            if result.separation is not None and result.separation < conf.DISTINCT_SEPARATION:
                # one scene throughout as far as the query goes (its best window looks like the rest of the video):
                # the video is the answer, listed once, instead of arbitrary slivers of it
                j = int(np.argmax(clip_cos))
                hits.append(LibraryHit(path, 0.0, round(result.duration, 3), float(clip_cos[j]), rank,
                                       hit_confidence(vecs[j], q[0], bank), j))
                continue
            best = float("inf")
            for m in result.moments:
                j = moment_clip(rows["start"][mine], rows["end"][mine], clip_cos, m.start, m.end)
                # the scorer's order within the video stands (a short peak it ranked lower does not pass the scene
                # it ranked first); the clip score only places the videos' moments among each other
                best = min(best, float(clip_cos[j]))
                hits.append(LibraryHit(path, m.start, m.end, best, rank, hit_confidence(vecs[j], q[0], bank), j))
        hits.sort(key=lambda h: -h.score)
        return SearchResult(text, self.encoder, distinct_hits(hits, top_k), candidates, rebuilt, missing, left_out)


def moment_clip(clip_starts: np.ndarray, clip_ends: np.ndarray, clip_cos: np.ndarray, start: float,
                end: float) -> int:
    """The clip that stands for a moment (its position in the video's clips): of the index's clips (the first
    stage's unit: CLIP_SECONDS of mean frame features, unit length) that lie mostly inside the moment (more than
    half of the shorter of clip and moment), the one with the best query cosine, else the clip overlapping it
    most, else the nearest. Its cosine is the moment's score, comparable across videos and lengths: the same
    numbers that chose the candidate videos, so the second stage does not reorder the videos on another scale
    (mean frame cosines did, and put realmix_dev among the top 5 for fewer queries: benchmarks/library.py)."""
    overlap = np.clip(np.minimum(clip_ends, end) - np.maximum(clip_starts, start), 0.0, None)
    mostly = overlap > 0.5 * np.minimum(clip_ends - clip_starts, end - start)
    if mostly.any():
        inside = np.nonzero(mostly)[0]
        return int(inside[int(np.argmax(clip_cos[inside]))])
    if overlap.max() > 0:
        return int(np.argmax(overlap))
    centres = (clip_starts + clip_ends) / 2
    return int(np.argmin(np.abs(centres - (start + end) / 2)))


def hit_confidence(clip: np.ndarray, query: np.ndarray, bank: np.ndarray) -> float:
    """How clearly a hit's clip (a unit vector) fits the query: the share of the null bank (unit embeddings of
    confidence.NULL_QUERIES, unrelated everyday descriptions) whose cosine with the clip is below the query's
    (ties count half). A clip fits some description best whatever it shows; the query earns a high confidence only
    by fitting it better than nearly all of them. Unlike a moment's confidence within one video
    (`retrieval.confidence`), it compares the clip with other descriptions, not with the rest of its video, so it
    holds for a whole-video hit and across videos."""
    return conf.Null(np.sort(bank @ clip)).confidence(float(clip @ query))


def distinct_hits(hits: Sequence[LibraryHit], top_k: int) -> list[LibraryHit]:
    """The first `top_k` of `hits` (best first), each place of a video once: a hit is dropped when it overlaps an
    already kept hit of the same video, lies no farther from it than the shorter one's length (so 2.0-2.3 s and
    1.7-3.6 s go after 2.0-3.0 s, and the 1-2 s slivers 24-25 s, 25-26.5 s of one scene after 23-24 s; a hit
    10 s away in the same video stays), or stands on the same index clip (`moment_clip`: the same 4 s of the
    video decided both). Per-video NMS keeps such windows, their IoU being low."""
    kept: list[LibraryHit] = []
    for h in hits:
        repeat = False
        for k in kept:
            if k.video != h.video:
                continue
            gap = max(h.start, k.start) - min(h.end, k.end)  # negative: they overlap
            if gap <= min(h.end - h.start, k.end - k.start) + 1e-6 or (h.clip >= 0 and h.clip == k.clip):
                repeat = True
                break
        if not repeat:
            kept.append(h)
            if len(kept) == top_k:
                break
    return kept


def _unusable_path(p: str | os.PathLike) -> str | None:
    """Why `p` cannot be added, in the words of a sentence's start ("X does not exist"), or None when it exists as a
    file or folder. A device, a pipe or a socket is not read at all (reading /dev/zero never ends)."""
    path = Path(p).expanduser()
    try:
        st = path.stat()
    except OSError as err:  # missing, a name over 255 bytes, a loop of links, no permission
        if isinstance(err, (FileNotFoundError, NotADirectoryError)):
            return f"{path} does not exist"
        return f"{path} cannot be looked at ({err.strerror or err})"
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return f"{path} is a device, pipe or socket, not a video file or folder"


def _expand(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Video files of `paths` (folders recursively), as catalogue paths and without repeats; what is not one is
    skipped."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            try:
                files += list_videos(path, recursive=True, unreadable=skipped)
            except VideoError as err:
                skipped.append((str(path), str(err)))
        elif path.is_file() and is_video_name(path):
            files.append(path)
        elif path.is_file():
            skipped.append((str(path), f"{path.name} is not a video file ({', '.join(VIDEO_EXTENSIONS)})."))
        else:
            skipped.append((str(path), f"{_unusable_path(path) or f'{path} is neither a file nor a folder'}."))
    unique = list(dict.fromkeys(catalogue_path(f) for f in files))
    return unique, skipped

