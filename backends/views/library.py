"""The library view: a query in, the best moments across a video library out, each with a thumbnail (the frame
at the moment's middle). Adding folders goes through `backends.retrieval.library.Library.add`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backends.core.contracts import ProgressFn, StopFn
from backends.core.errors import VideoError
from backends.io.video import read_frames
from backends.retrieval.library import AddReport, Library, SearchResult, existing_library


def open_library(library: Library | str | os.PathLike | None) -> Library:
    """The library to add to (a new folder becomes an empty library)."""
    return library if isinstance(library, Library) else Library(library)


def library_search_view(query: str, library: Library | str | os.PathLike | None = None, *, top_k: int = 8,
                        videos: int = 10, thumb_size: int = 180) -> tuple[SearchResult, list[np.ndarray | None]]:
    """`Library.search` plus one thumbnail per hit (uint8 RGB, shorter side `thumb_size`; None where the
    frame cannot be read any more, e.g. a file moved since it was indexed)."""
    lib = library if isinstance(library, Library) else existing_library(library)  # a typo never makes a library
    result = lib.search(query, top_k=top_k, videos=videos)
    thumbs: list[np.ndarray | None] = []
    for hit in result.results:
        try:
            frames, _ = read_frames(hit.video, fps=None, start=(hit.start + hit.end) / 2, max_frames=1, size=thumb_size)
            thumbs.append(frames[0])
        except (VideoError, ValueError, OSError):
            thumbs.append(None)
    return result, thumbs


def library_add_view(paths: list[str | os.PathLike], library: Library | str | os.PathLike | None = None, *,
                     encoder: str | None = None, fps: float = 1.0, progress: ProgressFn | None = None,
                     should_stop: StopFn | None = None) -> tuple[AddReport, dict]:
    """Add folders or files to the library; returns the report and the library's stats after it."""
    lib = open_library(library)
    report = lib.add([Path(p) for p in paths], encoder=encoder, fps=fps, progress=progress, should_stop=should_stop,
                     show_progress=False)
    return report, lib.stats()
