"""Fetch one file over HTTP(S) into place: streamed to a `.part` file beside the target, SHA-256 checked,
then renamed (an interrupted or corrupt download never sits where a loader would read it).

>>> download("https://host/ViT-B-32.pt", Path("~/.cache/clip/ViT-B-32.pt").expanduser(), sha256="40d3...")
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from backends.core.contracts import ProgressFn, StopFn
from backends.core.errors import CancelledError, MomentLensError
from backends.io.atomic import written_whole

CHUNK = 1 << 20


class DownloadError(MomentLensError):
    """The file could not be fetched (offline, HTTP error) or its checksum is wrong."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: ProgressFn | None = None,
             should_stop: StopFn | None = None, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` (atomic; an existing file with the right checksum is kept). Raises DownloadError
    with one sentence when offline, on an HTTP error, or when the SHA-256 differs. `sha256` may be a leading part
    of the digest (torchvision publishes the first 8 hex digits in its file names, and torch.hub checks those)."""
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise DownloadError(f"{sha256!r} is not a SHA-256 checksum; give 8 to 64 of its hex digits.")
    out = Path(dest).expanduser()
    if out.is_file() and (sha256 is None or sha256_of(out).startswith(sha256.lower())):
        return out
    h = hashlib.sha256()
    try:
        # two fetches of one file at once each write their own part; it becomes `out` only when whole and checked
        with written_whole(out, ".part") as part:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while block := response.read(CHUNK):
                    if should_stop is not None and should_stop():
                        raise CancelledError("download cancelled; nothing was kept.")
                    f.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        frac = done / total if total else 0.0
                        size = f"{done / 2**20:.1f} of {total / 2**20:.1f} MiB" if total else f"{done / 2**20:.1f} MiB"
                        progress(frac, f"downloading {out.name}: {size}")
            if sha256 is not None and not h.hexdigest().startswith(sha256.lower()):
                raise DownloadError(f"{out.name} from {url} has SHA-256 {h.hexdigest()[:12]}..., expected "
                                    f"{sha256.lower()[:12]}...; the file is corrupt or not the published one, so it "
                                    "was not kept.")
    except urllib.error.HTTPError as err:  # the server answered: say what it said about this URL
        raise DownloadError(f"cannot fetch {url} (HTTP {err.code} {err.reason}).") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:  # no answer: name the host only
        reason = getattr(err, "reason", err)
        why = getattr(reason, "strerror", None) or str(reason)
        host = urllib.parse.urlsplit(url).hostname or url
        raise DownloadError(f"cannot reach {host} ({why}); is this machine online?") from None
    return out
