"""On-disk feature cache: frame features keyed by (file content hash, encoder id, fps, resolution).

Entries are `.npz` files written atomically (temp file + rename) with a checksum of their arrays;
an entry that is unreadable, truncated or fails its checksum is treated as missing and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.core.paths import cache_dir
from backends.io.atomic import write_bytes_whole

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the entry layout changes
_HASH_CHUNK = 1 << 22


def file_content_hash(path: str | os.PathLike) -> str:
    """BLAKE2b of the file's bytes; remembered per (path, size, mtime) so a large file is hashed once."""
    p = Path(path).resolve()
    st = p.stat()
    memo_key = hashlib.sha1(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir() / "hashes" / memo_key
    try:
        value = memo.read_text().strip()
        if len(value) == 32:
            return value
    except OSError:
        pass
    h = hashlib.blake2b(digest_size=16)
    with open(p, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    value = h.hexdigest()
    write_bytes_whole(memo, value.encode())
    return value


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    content_hash: str  # of the video file's bytes
    encoder_id: str  # encoder name + weights version
    fps: float  # sampling rate
    resolution: int  # model input size
    crop: str = ""  # the bars cropped before the encoder ("top,bottom,left,right"; "" = none)

    def digest(self) -> str:
        text = f"v{FORMAT_VERSION}|{self.content_hash}|{self.encoder_id}|{self.fps:g}|{self.resolution}"
        if self.crop:  # digests of uncropped features are those of earlier versions
            text += f"|crop{self.crop}"
        return hashlib.sha1(text.encode()).hexdigest()


# Folders under the cache root that hold only what can be computed again; `clear` deletes these and nothing else
# (the default library, `<cache>/library`, and the checkpoints of `<cache>/models` and `<cache>/adapters` live
# there too, and are the user's own work).
DERIVED = ("features", "hashes", "labels", "gunzip", "playable")


class FeatureCache:
    """A folder of `features/<digest>.npz` entries."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self.dir = self.root / "features"

    def path(self, key: CacheKey) -> Path:
        return self.dir / f"{key.digest()}.npz"

    def get(self, key: CacheKey) -> dict | None:
        """The stored arrays and metadata, or None if absent or damaged (a damaged entry is removed)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "meta"}
                meta = json.loads(str(z["meta"]))
            if meta.get("checksum") != _checksum(arrays):
                raise ValueError("checksum mismatch")
            return {"meta": meta, **arrays}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            log.warning("cache entry %s is damaged (%s); recomputing", p.name, err)
            p.unlink(missing_ok=True)
            return None

    def put(self, key: CacheKey, arrays: dict[str, np.ndarray], meta: dict) -> Path:
        """Write an entry atomically: a crash leaves either the old state or the complete entry."""
        meta = {**meta, "key": key.__dict__, "checksum": _checksum(arrays)}
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{"meta": np.array(json.dumps(meta)), **arrays})  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p

    def entries(self) -> list[Path]:
        return sorted(self.dir.glob("*.npz")) if self.dir.is_dir() else []

    def size_bytes(self) -> int:
        """Bytes of what `clear` deletes: the DERIVED folders (features, hashes, label embeddings, unpacked and
        playable copies of clips)."""
        return sum(f.stat().st_size for d in self.derived() for f in d.rglob("*") if f.is_file())

    def derived(self) -> list[Path]:
        """The DERIVED folders present under the cache root."""
        return [self.root / name for name in DERIVED if (self.root / name).is_dir()]

    def kept(self) -> list[Path]:
        """What else lies under the cache root (the video library, checkpoints, anything unknown): never cleared."""
        if not self.root.is_dir():
            return []
        return sorted(c for c in self.root.iterdir() if c.name not in DERIVED)

    def clear(self) -> int:
        """Delete the DERIVED folders (everything recomputable); returns the bytes freed. The library, the models
        folder and anything else the user made under the cache root stay."""
        freed = self.size_bytes()
        for d in self.derived():
            shutil.rmtree(d, ignore_errors=True)
        return freed
