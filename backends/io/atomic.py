"""Writing a file whole: to a temporary name of this writer's own beside it, renamed into place in one step.

Every writer (a process, or a thread: the app and the widgets work on threads) gets its own temporary name, so
two writers of the same file never rename each other's half-written file away nor find their own gone (a
shared `.part` or pid-only name did both: FileNotFoundError for two users opening one clip at once). A reader
sees the old file or the new one, never half of one; a failed write leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from backends.core.errors import MomentLensError

_WRITES = itertools.count()


def private_name(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden name beside `path` that no other write (process, thread or call) uses; `suffix` ends it (np.save
    and np.savez append their own extension to a name without it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_WRITES)}{suffix}")


@contextlib.contextmanager
def written_whole(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Write to the temporary path this yields; when the block ends without an error it becomes `path` in one
    step; otherwise it is removed and `path` stays as it was."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_name(out, suffix)
    try:
        yield tmp
        if tmp.exists():  # a library may create its file owner-only (safetensors does): the umask's mode, as open()
            with contextlib.suppress(OSError):  # a file system without modes (vfat, some FUSE) refuses: keep its own
                os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """This process's umask, read without changing it (os.umask can only be read by setting it, which is not
    thread-safe): from /proc on Linux, else the usual 022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def refuse_to_replace(paths: Sequence[Path], force: bool, hint: str = "",
                      error: type[MomentLensError] = MomentLensError) -> None:
    """A trained model is hours of work: a run never replaces one unless asked (--force)."""
    there = [p for p in paths if p.exists()]
    if there and not force:
        raise error(f"{there[0]} already exists (from an earlier run); pass --force to replace it{hint}, or choose "
                    "another --out.")


def write_bytes_whole(path: str | os.PathLike, data: bytes) -> None:
    with written_whole(path) as tmp:
        tmp.write_bytes(data)


def copy_whole(src: str | os.PathLike, path: str | os.PathLike) -> None:
    with written_whole(path) as tmp:
        shutil.copyfile(src, tmp)


def copy_to_free_name(src: str | os.PathLike, folder: Path, name: str) -> Path:
    """Copy `src` into `folder` as `name`, or `stem-1.ext`, `stem-2.ext`, ... : the first name free, and return it.
    The copy is made whole under a private name first and then published with a hard link, which fails if the
    name exists (one step: two callers at once never get the same name, nothing there is overwritten, and no
    reader ever sees the name empty or half-written). On a filesystem without hard links the name is claimed
    empty with O_EXCL and the copy renamed over it (readers may then see it empty for the length of the copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    tmp = private_name(folder / name)
    try:
        shutil.copyfile(src, tmp)
        for n in itertools.count():
            target = folder / (name if n == 0 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue
            except OSError:  # no hard links here (some network and FAT filesystems): claim, then replace
                try:
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                except FileExistsError:
                    continue
                os.replace(tmp, target)
                return target
        raise AssertionError("unreachable")
    finally:
        tmp.unlink(missing_ok=True)
