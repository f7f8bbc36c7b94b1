"""An exclusive lock held by one writer at a time: a library's `index add`, a training run's --out.

POSIX advisory locks (fcntl.flock) on a small file beside what is written: released when the holder ends, even
when it is killed, so a crash never leaves a stale lock. Elsewhere (no fcntl) writers are not serialised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: Path, on_busy: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of `path` (the file is created if missing) for the block. When another holder has it,
    `on_busy()` runs first: it may say so and return (this then waits for the lock) or raise (refuse)."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_busy is not None:
                on_busy()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
