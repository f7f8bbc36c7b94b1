"""The one place where checkpoint files are read and written.

Reading always uses `torch.load(..., weights_only=True)`: tensors and plain containers only, whatever the
torch version or the environment (`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` is ignored), so a checkpoint can
never run code. Writing is atomic (temp file + rename): a crash leaves the old file or the complete new one.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from backends.core.errors import CheckpointError
from backends.io.atomic import written_whole


def require_checkpoint_file(path: Path, what: str = "checkpoint") -> None:
    """CheckpointError with one sentence unless `path` is a file: a folder is said as a folder."""
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a checkpoint file; give the file inside it.")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist.")


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """A checkpoint file's content (tensors and plain data only), or CheckpointError with one sentence.
    `mmap=True` maps the tensors' storage instead of reading it (a cheap look at a large file's structure)."""
    p = Path(path).expanduser()
    require_checkpoint_file(p)
    try:
        if mmap:
            return torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
        with open(p, "rb") as f:  # an open file: torch.load never re-resolves the path
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or holds pickled code we refuse to run
        raise CheckpointError(f"{p.name} is not a readable PyTorch checkpoint ({type(err).__name__}).") from err


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether a file is a TorchScript archive (a zip with TorchScript code), as OpenAI's CLIP files are."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive, or CheckpointError. Only for files the machine's owner chose
    (a command-line path, the CLIP cache, the models directory): a web request never reaches this."""
    p = Path(path).expanduser()
    try:
        module = torch.jit.load(str(p), map_location="cpu")
        return {k: v.detach().clone() for k, v in module.state_dict().items()}
    except Exception as err:
        raise CheckpointError(f"{p.name} is not a readable TorchScript archive ({type(err).__name__}).") from err


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `payload` to `path` atomically; returns the path."""
    out = Path(path)
    with written_whole(out) as tmp:
        torch.save(payload, tmp)
    return out


def file_version(path: str | os.PathLike) -> str:
    """A short id of one version of a file (resolved path, size, mtime): part of encoder ids and cache keys."""
    p = Path(path)
    st = p.stat()
    return hashlib.sha1(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
