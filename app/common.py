"""What every tab shares: the app context (defaults, per-session stop flags, a scratch folder), turning backend
errors into one-sentence `gr.Error`s, progress bridging with cancel, exports, and presentation helpers.

No computation here: handlers call backend functions and format what they return.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.io as pio

from backends.core.contracts import check_query
from backends.core.errors import CancelledError, MomentLensError, QueryError
from backends.core.paths import is_inside
from backends.io.atomic import copy_whole
from backends.views.offers import ServerOffers

log = logging.getLogger(__name__)

GPU_QUEUE = "gpu"  # concurrency_id shared by every model-heavy handler
FPS_CHOICES = (0.5, 1.0, 2.0, 4.0)
PLOT_HEIGHT = 420


# --- context ------------------------------------------------------------------------------------
@dataclass
class AppContext:
    """Per-app (not per-user) settings and bookkeeping; user data lives in gr.State / per-session keys."""

    encoder: str  # encoder selected when the page opens
    video: str | None  # browser-playable copy of the preloaded sample clip
    workdir: Path  # scratch folder under the system temp dir (Gradio serves files from there)
    gpu_concurrency: int = 1  # model-heavy handlers running at once (one device)
    video_source: str | Path | None = None  # the preloaded clip itself (to preselect it in the sample list)
    offers: ServerOffers = field(default_factory=ServerOffers)  # what a remote caller may choose
    local: bool = False  # served to this machine's own user only: checkpoint uploads into the models folder, downloads
    library: Path | None = None  # the video library the Library tab searches (None: no library is served)
    stop_requests: dict[str, threading.Event] = field(default_factory=dict)  # keyed by session hash
    uploads: dict[str, set[str]] = field(default_factory=dict)  # files each session uploaded (removed at its end)
    adapters: dict[str, list[str]] = field(default_factory=dict)  # adapters each session trained (offered to it)
    computing: dict[str, dict[int, tuple[str, bool]]] = field(default_factory=dict)  # per session: (what, stoppable)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def session_key(request: gr.Request | None) -> str:
        key = getattr(request, "session_hash", None) or "api"
        return "".join(c for c in str(key) if c.isalnum())[:32] or "api"

    def remember_adapter(self, request: gr.Request | None, name: str) -> tuple[str, ...]:
        """Record an adapter this session trained; returns every adapter the session trained so far."""
        with self.lock:
            trained = self.adapters.setdefault(self.session_key(request), [])
            if name not in trained:
                trained.append(name)
            return tuple(trained)

    def track_upload(self, request: gr.Request | None, path: str | Path | None) -> None:
        """Remember a file this session uploaded (Gradio's upload folder), to delete it when the session ends."""
        if not path:
            return
        with self.lock:
            self.uploads.setdefault(self.session_key(request), set()).add(str(path))

    def end_session(self, request: gr.Request | None) -> None:
        """The browser tab closed: delete the session's uploads, exports and trained checkpoints."""
        key = self.session_key(request)
        with self.lock:
            files = self.uploads.pop(key, set())
            self.stop_requests.pop(key, None)
            self.adapters.pop(key, None)
        for f in files:
            Path(f).unlink(missing_ok=True)
        shutil.rmtree(self.workdir / "sessions" / key, ignore_errors=True)
        log.info("session %s ended: %d uploads removed", key[:8], len(files))

    def close(self) -> None:
        """The server stops: delete the whole work folder (served copies, every session's files)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def resolve_encoder(self, choice: str | None) -> str:
        """The canonical name of an encoder this server offers (the page's default when empty), or gr.Error."""
        return self.offers.resolve_encoder(choice) or self.encoder

    def encoder_choices(self, first: str | None = None, extra: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """(label, value) pairs for the encoder dropdown: files show their name, not the server's path."""
        out = []
        for name in self.offers.encoder_choices(first or self.encoder, extra):
            family, _, arg = name.partition(":")
            label = f"{family}:{Path(arg).name}" if arg.startswith("/") else name
            out.append((label, name))
        return out

    def session_encoder_choices(self, request: gr.Request | None, first: str | None = None) -> list[tuple[str, str]]:
        """encoder_choices plus the adapters this browser session trained."""
        with self.lock:
            trained = tuple(self.adapters.get(self.session_key(request), ()))
        return self.encoder_choices(first, extra=trained)

    def stop_event(self, request: gr.Request | None) -> threading.Event:
        """The cancel flag of this browser session (created on first use)."""
        key = self.session_key(request)
        with self.lock:
            return self.stop_requests.setdefault(key, threading.Event())

    def tracked(self, what: str, stoppable: bool = True) -> Callable[[Callable], Callable]:
        """Decorate a model-heavy handler: while it runs, `running(request)` names `what` ("the search") for its
        session, so that Cancel says what it stopped, or that nothing of the page had started. A handler that
        Cancel cannot stop (loading an encoder) is `stoppable=False`: Cancel says it goes on."""

        def wrap(fn: Callable) -> Callable:
            @functools.wraps(fn)  # Gradio reads the wrapped signature (gr.Request, gr.Progress)
            def wrapper(*args, **kwargs):
                request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
                key, token = self.session_key(request), object()
                with self.lock:
                    self.computing.setdefault(key, {})[id(token)] = (what, stoppable)
                try:
                    return fn(*args, **kwargs)
                finally:
                    with self.lock:
                        running = self.computing.get(key, {})
                        running.pop(id(token), None)
                        if not running:
                            self.computing.pop(key, None)

            return wrapper

        return wrap

    def running(self, request: gr.Request | None, stoppable: bool = True) -> list[str]:
        """What the handlers of this browser session are computing now (started, not yet returned): those Cancel
        stops, or (stoppable=False) those it cannot."""
        with self.lock:
            jobs = self.computing.get(self.session_key(request), {}).values()
            return list(dict.fromkeys(what for what, can in jobs if can == stoppable))

    def session_dir(self, request: gr.Request | None, kind: str) -> Path:
        """A fresh folder for one export of one session (files are copied to Gradio's cache when returned)."""
        root = self.workdir / "sessions" / self.session_key(request)
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))

    def servable(self, path: str | Path) -> str:
        """A copy of `path` inside the scratch folder (Gradio only serves files from temp, cwd or uploads)."""
        p = Path(path)
        if is_inside(p, Path(tempfile.gettempdir())):
            return str(p)

        key = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
        target = self.workdir / "videos" / key / p.name  # keeps the file name the user knows
        if not target.is_file() or target.stat().st_size != p.stat().st_size:
            copy_whole(p, target)  # two users opening the clip at once each write their own copy
        return str(target)



# --- errors -------------------------------------------------------------------------------------
def user_errors(fn: Callable) -> Callable:
    """Show backend errors as one-sentence gr.Error messages; the app keeps serving the next request."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as err:
            log.info("user error in %s: %s", fn.__name__, err.message)
            err.print_exception = False
            raise
        except CancelledError as err:  # one INFO line in the server log, one sentence in the page
            log.info("cancelled in %s: %s", fn.__name__, err)
            raise gr.Error(str(err), title="Cancelled", print_exception=False) from None
        except MomentLensError as err:
            log.info("user error in %s: %s", fn.__name__, err)
            raise gr.Error(sentence(str(err), _file_names(args, kwargs)), print_exception=False) from None
        except Exception as err:  # a bug: the traceback goes to the server log, the page gets one sentence
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong on the server ({type(err).__name__}, a bug); the details are in "
                           "the server log.", print_exception=False) from None

    return wrapper


def number_dropdown(choices: Sequence[float], value: float, **kwargs: Any) -> gr.Dropdown:
    """A dropdown of numbers (the frame rate). Gradio's own says its API takes a string (`Literal['0.5', '1.0', ...]`)
    and then refuses "1.0"; this one says number and also takes the number written as a string. (Set on the
    instance: a subclass of a Gradio component makes Gradio write a .pyi file next to our source.)"""
    dd = gr.Dropdown(list(choices), value=value, **kwargs)
    check = dd.preprocess

    def preprocess(payload: Any) -> Any:
        if isinstance(payload, str):
            try:
                payload = float(payload)
            except ValueError:
                pass  # refused by Gradio's choice check, in its words
        return check(payload)

    setattr(dd, "preprocess", preprocess)  # noqa: B010 - an instance's own method, see above
    setattr(dd, "api_info", lambda: {"type": "number", "enum": list(choices)})  # noqa: B010
    return dd


def whole(value: Any, what: str) -> int:
    """A slider's or number box's value as an int, or one sentence: Gradio's range check lets NaN through (every
    comparison with it is false), and int(NaN) would be "a bug"."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a whole number, got {str(value)[:40]!r}.", print_exception=False) from None
    if not math.isfinite(x):
        raise gr.Error(f"{what} must be a finite whole number, got {x}.", print_exception=False)
    return int(x)


def sentence(text: str, names: Iterable[str] = ()) -> str:
    """A backend message as the page shows it: trimmed, first letter capital unless the message starts with a name
    whose case matters (notes.mp4, video:/path, or one of `names`: the request's file names, since a message about
    a file called `passwd` starts with that name): only a plain word is capitalised."""
    text = text.strip()
    if not text:
        return "Something went wrong."
    first = text.split(maxsplit=1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first not in set(names) else text


def _file_names(*values: Any) -> set[str]:
    """The base names of every path among a handler's arguments (strings, Gradio's file dicts, lists of them)."""
    names: set[str] = set()
    for value in values:
        if isinstance(value, str | Path) and str(value).strip() and len(str(value)) < 4096:
            names.add(Path(str(value)).name)
        elif isinstance(value, dict):
            names |= _file_names(*value.values())
        elif isinstance(value, list | tuple):
            names |= _file_names(*value[:64])
    return names


def upload_path(file: Any) -> str | None:
    """The server path of a gr.File / gr.UploadButton upload (Gradio only hands over files this session uploaded)."""
    if not file:
        return None
    return file if isinstance(file, str) else file.get("path")


NO_VIDEO = "No video yet: upload a clip or pick a sample clip first."


def video_path(video: Any) -> str | None:
    """The server path of the video input (None when there is none)."""
    if isinstance(video, dict):
        video = video.get("path") or video.get("video", {}).get("path")
    return str(video) if video else None


def require_video(video: Any) -> str:
    """The server path of the video input, or a gr.Error asking for one."""
    path = video_path(video)
    if path is None:
        raise gr.Error(NO_VIDEO)
    return path


def query_validator(video_at: int | None = 0, query_at: int = 1) -> Callable[..., list]:
    """A Gradio validator for an event whose inputs hold the clip (at `video_at`) and a text query (at `query_at`):
    a missing clip or an empty, over-long or garbled query is shown beside its box before any model runs, and the
    last result stays as it was (a gr.Error raised by the handler puts an Error badge on every output, over the
    previous query's result). The handler's own checks stay for what only the backend can tell."""

    def validate(*values: Any) -> list:
        verdicts = [gr.validate(True, "") for _ in values]
        if video_at is not None and video_path(values[video_at]) is None:
            verdicts[video_at] = gr.validate(False, NO_VIDEO)
        try:
            check_query(values[query_at])
        except QueryError as err:
            verdicts[query_at] = gr.validate(False, sentence(str(err)))
        return verdicts

    return validate


def require_text(text: Any, what: str = "query") -> str:
    if not isinstance(text, str) or not text.strip():
        raise gr.Error(f"The {what} is empty; type a sentence describing the moment to find.")
    return text


def progress_bridge(progress: gr.Progress | None, stop: threading.Event | None,
                    start: float = 0.0, span: float = 1.0) -> Callable[[float, str], None]:
    """A backend `progress(frac, text)` callback that drives a gr.Progress bar (with what is happening and
    an estimate of the time left) and honours Cancel."""
    t0 = time.monotonic()

    def report(frac: float, text: str) -> None:
        if stop is not None and stop.is_set():
            raise CancelledError("cancelled; nothing partial was kept.")
        if progress is not None:
            f = max(0.0, min(1.0, float(frac)))
            progress(start + span * f, desc=text + eta_text(time.monotonic() - t0, f))

    return report


def eta_text(elapsed: float, frac: float) -> str:
    """' · about 12 s left' from the time spent and the fraction done (nothing until 5 % and 1 s in)."""
    if frac < 0.05 or frac >= 1.0 or elapsed < 1.0:
        return ""
    left = elapsed * (1.0 - frac) / frac
    return f" · about {left:.0f} s left" if left < 90 else f" · about {left / 60:.0f} min left"


# --- exports ------------------------------------------------------------------------------------
def kaleido_available() -> bool:
    return importlib.util.find_spec("kaleido") is not None


def export_figures(figures: dict[str, Any], folder: Path) -> tuple[list[str], str]:
    """Standalone HTML and a PNG of each figure; returns (paths, note). PNGs are drawn offline by kaleido
    with the machine's Chromium (one browser for all figures); without either, the note says so."""
    figures = {stem: fig for stem, fig in figures.items() if fig is not None}
    paths = []
    for stem, fig in figures.items():
        html = folder / f"{stem}.html"
        fig.write_html(str(html), include_plotlyjs=True)
        paths.append(str(html))
    if not kaleido_available():
        return paths, ("PNG files need the `kaleido` package, which is not installed; use the camera button "
                       "above each plot to save a PNG from the browser.")
    pngs = {stem: folder / f"{stem}.png" for stem in figures}
    try:
        for _attempt in range(2):  # kaleido returns a figure's render error instead of raising: try those again once
            todo = [stem for stem, p in pngs.items() if not p.is_file()]
            if not todo:
                break
            pio.write_images([figures[s] for s in todo], [str(pngs[s]) for s in todo], scale=2)
    except Exception as err:  # kaleido present but no Chrome/Chromium for it to drive
        log.warning("PNG export failed: %s", err)
        return paths, ("PNG export needs Chrome or Chromium for kaleido (not found on the server); use the camera "
                       "button above each plot to save a PNG from the browser.")
    missing = [stem for stem, p in pngs.items() if not p.is_file()]
    if missing:  # never hand out a path that is not there
        log.warning("PNG export: kaleido drew no %s", ", ".join(missing))
        return paths + [str(p) for p in pngs.values() if p.is_file()], (
            f"The PNG of {', '.join(missing)} could not be drawn this time (the server's renderer gave up); its HTML is "
            "there, or use the camera button above the plot.")
    return paths + [str(p) for p in pngs.values()], ""


def write_json(obj: Any, path: Path) -> str:
    """An export for the browser to download: the clip is named by its file name, never by the server's folders
    (an upload lives under /tmp/gradio/<hash>/), whichever view's document it is."""
    path.write_text(json.dumps(_clip_names(obj), indent=2, default=_plain))
    return str(path)


def _clip_names(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (Path(v).name if k in ("video", "checkpoint") and isinstance(v, str) and v else _clip_names(v))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clip_names(v) for v in obj]
    return obj


def write_csv(rows: Iterable[dict], path: Path) -> str:
    rows = list(rows)
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return str(path)


def _plain(x):

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# --- presentation -------------------------------------------------------------------------------
def export_section(button_label: str) -> tuple[gr.Button, gr.Markdown, gr.File]:
    """The collapsed Export box every tab has: its button, a note (e.g. why no PNG) and the downloads."""
    with gr.Accordion("Export", open=False):
        button = gr.Button(button_label)
        note = gr.Markdown(elem_classes=["ml-note"])
        files = gr.File(label="Downloads", file_count="multiple", interactive=False)
    return button, note, files



def fit_width(fig, height: int | None = None):
    """Let a backend figure follow the width of its Gradio container (figures come sized for HTML files)."""
    if fig is None:
        return None
    fig.update_layout(width=None, autosize=True, **({"height": height} if height else {}))
    return fig


def seconds(t: float) -> str:
    """1:05.2 for 65.2 s (0:07.0 for 7 s)."""
    m, s = divmod(max(0.0, float(t)), 60.0)
    return f"{int(m)}:{s:04.1f}"
