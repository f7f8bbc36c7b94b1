"""One ipywidgets panel per view, each a thin wrapper over the backend call the web app uses too.

    from widgets import Explorer, RetrievalPanel
    panel = RetrievalPanel(video="clip.mp4"); panel          # shows the panel in a notebook
    panel.query.value = "a dog runs"                          # recomputes (continuous_update=False)
    panel.result                                              # the last result as plain Python data

Every panel has `.widget` (what is displayed), `.result` (plain data of what the panel shows: the last run that
succeeded, None before and after a change of clip or encoder; a failed run leaves it, and `.runner.status` says why),
`.run()` (recompute from the controls), `.runner` (progress bar, Stop, status line) and `.wait()`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import ipywidgets as W
import numpy as np
from IPython.display import display

from backends.analysis.augment import METHODS as AUGMENT_METHODS
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig
from backends.analysis.gradcam_options import METHODS as CAM_METHODS
from backends.core.errors import MomentLensError, QueryError, WindowError
from backends.figures.compare import ENCODER_COLOURS
from backends.figures.retrieval import saliency_figure, temporal_map_figure
from backends.io.playback import playable_path
from backends.retrieval.engine import check_window, retrieve, retrieve_by_clip
from backends.retrieval.library import CONFIDENCE_MEANING
from backends.train.adapter import (
    adapter_training_videos,
    loss_curve_paths,
    train_adapter_on_videos,
)
from backends.views.augment import augment_view
from backends.views.compare import compare_view
from backends.views.gradcam import gradcam_view
from backends.views.library import library_search_view
from backends.views.scaling import scaling_view
from backends.views.similarity import frames_at, self_similarity_view
from widgets.common import (
    Runner,
    Source,
    VideoPlayer,
    clear_figure,
    figure_widget,
    from_browser,
    show_figure,
    trained_adapters_dir,
)


class Panel:
    """The shared source (video + encoder) and a runner around the panel's own controls and outputs."""

    title = "panel"
    run_label = "Run"
    _quiet = False  # set while a linked panel fills the controls: no recompute per field

    def __init__(self, video: str | Path | None = None, encoder: str | None = None, *,
                 source: Source | None = None, background: bool | None = None, with_source: bool = True):
        self.shared_source = source is not None
        self.source = source or Source(video, encoder)
        self.video = self.source.video      # VideoPicker: `.value` is the path
        self.encoder = self.source.encoder  # Dropdown of encoder names
        self.runner = Runner(background)
        self.result: dict | None = None
        self.go_button = W.Button(description=self.run_label, button_style="primary")
        self.go_button.on_click(lambda _: self.run(background=True))
        header = [self.source] if with_source and not self.shared_source else []
        self.widget = W.VBox(header + [*self.build(), W.HBox([self.go_button, self.runner])])
        # another clip or encoder: a run in flight is dropped, and every output computed on the previous one goes
        # (nothing stale stays on screen)
        self.video.path.observe(lambda _change: self._inputs_changed(), names="value")
        self.encoder.observe(lambda _change: self._inputs_changed(), names="value")

    def _inputs_changed(self) -> None:
        if self.source.reoffering:  # only the list of encoders grew
            return
        self.runner.drop()
        self.clear()

    def build(self) -> list[W.Widget]:  # controls and outputs, defined by each panel
        return []

    def clear(self) -> None:
        """Forget the outputs of the last run (called when the clip changes); panels clear their own widgets."""
        self.result = None
        self.runner.status.value = ""

    def run(self, background: bool = False) -> None:
        """Recompute from the current controls (in a worker thread when `background`)."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> None:
        self.runner.wait(timeout)

    def _rerun_on(self, *controls: W.Widget) -> None:
        """Recompute when a control's committed value changes (browser changes run in the background)."""
        for c in controls:
            c.observe(lambda change: None if self._quiet else self.run(background=from_browser(change)), names="value")

    def _ipython_display_(self):

        display(self.widget)


class RetrievalPanel(Panel):
    """Text query -> top-k moments (table + buttons that seek the player), saliency curve and 2D map;
    clicking the saliency curve or a map cell also seeks the player."""

    title = "Moment retrieval"
    run_label = "Find moments"

    def build(self):
        self.query = W.Text(description="query", placeholder="describe the moment, then Enter",
                            continuous_update=False, layout=W.Layout(width="520px"))
        self.clip = W.Text(description="or clip", placeholder="start end (s): the moments most like it",
                           continuous_update=False, layout=W.Layout(width="320px"))
        self.top_k = W.IntSlider(value=5, min=1, max=10, description="top-k", continuous_update=False)
        self.nms = W.FloatSlider(value=0.5, min=0.1, max=0.9, step=0.05, description="NMS IoU",
                                 continuous_update=False)
        self.fps = W.Dropdown(options=[0.5, 1.0, 2.0, 4.0], value=1.0, description="fps",
                              layout=W.Layout(width="160px"))
        self.head = W.Text(description="head", placeholder="grounding checkpoint (empty: zero-shot)",
                           continuous_update=False, layout=W.Layout(width="420px"))
        self.gt = W.Text(description="truth", placeholder="start end (s), optional", continuous_update=False,
                         layout=W.Layout(width="260px"))
        self.chips = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.table = W.HTML()
        self.player = VideoPlayer()
        self.saliency = figure_widget(height=320, title="saliency")
        self.map = figure_widget(height=560, width=700, title="2D temporal map")
        self.loop = W.Checkbox(value=False, description="loop a moment", indent=False, layout=W.Layout(width="140px"))
        W.link((self.loop, "value"), (self.player, "loop"))
        self.on_result: list = []  # callables(RetrievalResult) run after each retrieval (the Explorer links Grad-CAM)
        self.on_moment: list = []  # callables(start, end) run when a moment button is pressed
        self._rerun_on(self.top_k, self.nms, self.fps, self.head, self.gt)
        # a text query or a clip, whichever was typed last: the other box empties, so what ran is what is shown
        self.query.observe(lambda ch: self._either(ch, self.clip), names="value")
        self.clip.observe(lambda ch: self._either(ch, self.query), names="value")
        return [W.HBox([self.query, self.clip, self.top_k]), W.HBox([self.nms, self.fps, self.head, self.gt]),
                W.HBox([self.chips, self.loop]), W.HBox([self.player, self.table]), self.saliency, self.map]

    def clear(self) -> None:
        super().clear()
        for fig in (self.saliency, self.map):
            clear_figure(fig)
        self.chips.children, self.table.value = [], ""
        self.player.clear()

    def _either(self, change: dict, other: W.Text) -> None:
        if self._quiet:
            return
        if change["new"].strip() and other.value.strip():
            self._quiet = True
            try:
                other.value = ""
            finally:
                self._quiet = False
            self.runner.drop()  # what is shown came from the box just emptied: it goes, even if this run fails
            self.clear()
        self.run(background=from_browser(change))

    def _ground_truth(self, duration: float) -> tuple[float, float] | None:
        window = _typed_window(self.gt.value, "the ground truth")
        return None if window is None else check_window(window, duration, "the ground truth")

    def _query_clip(self) -> tuple[float, float] | None:
        return _typed_window(self.clip.value, "the query clip")

    def run(self, background: bool = False) -> None:
        """A text query, or (when the clip box holds 'start end') the moments most like that clip (query by clip)."""
        video, query, runner = self.video.value, self.query.value, self.runner
        options = dict(encoder=self.encoder.value, top_k=self.top_k.value, nms_threshold=self.nms.value,
                       fps=float(self.fps.value))
        head = self.head.value.strip() or None

        def work():
            moment = self._query_clip()
            if moment is not None and head is not None:
                raise QueryError("a grounding head scores text queries, not clips: empty the head box, or the clip box "
                                 "to search by text.")
            if moment is not None:
                r = retrieve_by_clip(video, moment=moment, progress=runner.progress, should_stop=runner.should_stop,
                                     **options)
            else:
                r = retrieve(video, query, head=head, progress=runner.progress, should_stop=runner.should_stop,
                             **options)
            gt = self._ground_truth(r.duration)
            playable_path(video)  # a browser-playable copy is made here, off the kernel's thread
            return r, gt

        def done(out):
            r, gt = out
            self.player.load(video)
            show_figure(self.saliency, saliency_figure(r, top=min(3, len(r.moments))), on_click=lambda x, _y: self.seek(x))
            show_figure(self.map, temporal_map_figure(r.map, r.moments, gt=gt, title=f"2D temporal map, N = {r.map.num_clips}"),
                        on_click=lambda x, _y: self.seek(x))
            rows = r.table(gt)
            verdict = f"<p><b>{html.escape(r.verdict())}</b></p>" if r.verdict() else ""
            self.table.value = verdict + _table_html(rows) + (f"<i>{html.escape(self.player.note)}</i>" if self.player.note else "")
            self.chips.children = [self._chip(i, m) for i, m in enumerate(r.moments, start=1)]
            self.result = {**r.to_dict(), "table": rows, "scorer": r.scorer, "ground_truth": gt, "verdict": r.verdict(),
                           "saliency": {"times": r.saliency_times.tolist(), "values": r.saliency.tolist()}}
            for listener in self.on_result:
                listener(r)

        runner.run(work, done, background)

    def _chip(self, rank, moment):
        b = W.Button(description=f"#{rank} {moment.start:.1f}–{moment.end:.1f} s",
                     tooltip="play this moment (it stops at its end)", layout=W.Layout(width="auto"))
        b.on_click(lambda _: self.play_moment(moment.start, moment.end))
        return b

    def play_moment(self, start: float, end: float) -> None:
        """Play one moment on the player (it stops at `end`, or loops) and tell the linked panels."""
        self.player.play_moment(start, end)
        for listener in self.on_moment:
            listener(start, end)

    def seek(self, seconds: float) -> None:
        """Play the clip from `seconds` (what a moment button or a click on a figure does)."""
        self.player.seek(seconds)


def _typed_window(value: str, what: str) -> tuple[float, float] | None:
    """'start end' typed in a text box (comma or spaces) -> (start, end); empty -> None; else one sentence."""
    text = value.replace(",", " ").split()
    if not text:
        return None
    try:
        window = tuple(float(v) for v in text)
    except ValueError:
        window = ()
    if len(window) != 2 or not all(np.isfinite(window)):
        raise WindowError(f"{what} {value!r} is not two numbers; type 'start end' in seconds.")
    return window[0], window[1]


def _table_html(rows: list[dict]) -> str:
    keys = ["rank", "start", "end", "length", "score"] + (["confidence"] if rows and rows[0].get("confidence") is not None else []) \
        + (["iou"] if rows and rows[0]["iou"] is not None else [])
    head = "".join(f"<th style='padding:2px 8px'>{k}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{r[k]}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class SelfSimilarityPanel(Panel):
    """RepNet / cosine self-similarity with event boundaries; click a cell (or type two times) to see its frames."""

    title = "Self-similarity"
    run_label = "Compute"

    def build(self):
        self.kind = W.ToggleButtons(options=["repnet", "cosine"], value="repnet", description="kind")
        self.features = W.ToggleButtons(options=["visual", "joint"], value="visual", description="features")
        self.fps = W.Dropdown(options=[0.5, 1.0, 2.0], value=1.0, description="fps", layout=W.Layout(width="160px"))
        self.figure = figure_widget(height=700)
        self.summary = W.HTML()
        self.t1 = W.FloatText(value=0.0, description="t1 (s)", layout=W.Layout(width="160px"))
        self.t2 = W.FloatText(value=10.0, description="t2 (s)", layout=W.Layout(width="160px"))
        self.frames = W.HBox([W.Image(format="png", width=320), W.Image(format="png", width=320)],
                             layout=W.Layout(display="none"))  # shown once there are frames
        self._rerun_on(self.kind, self.features, self.fps)
        # the frames have their own runner: looking at a cell never cancels a Compute in flight
        self.frame_runner = Runner(self.runner.background)
        for t in (self.t1, self.t2):
            t.observe(lambda change: self.show_frames(background=from_browser(change)), names="value")
        return [W.HBox([self.kind, self.features, self.fps]), self.summary, self.figure,
                W.HBox([self.t1, self.t2, self.frame_runner]), self.frames]

    def run(self, background: bool = False) -> None:

        video, runner = self.video.value, self.runner
        options = dict(kind=self.kind.value, fps=float(self.fps.value), features=self.features.value)

        def done(out):
            result, fig = out
            show_figure(self.figure, fig, on_click=self.pick_cell)
            self.result = result.to_dict()
            bounds = ", ".join(f"{b:.1f}" for b in result.boundaries) or "none"
            self.summary.value = (f"{len(result.times)} frames · {len(result.boundaries)} boundaries at {bounds} s · "
                                  f"{len(result.events)} k-means events · encoder {html.escape(result.encoder)}")

        runner.run(lambda: self_similarity_view(video, self.encoder.value, progress=runner.progress, **options),
                   done, background)

    def clear(self) -> None:
        super().clear()
        self.frame_runner.drop()
        self.frame_runner.status.value = ""
        clear_figure(self.figure)
        self.summary.value = ""
        self.frames.layout.display = "none"

    def pick_cell(self, x: float, y: float) -> None:
        """A clicked cell (x, y seconds) shows the two frames."""
        with self.t1.hold_trait_notifications(), self.t2.hold_trait_notifications():
            self.t1.value, self.t2.value = round(float(x), 2), round(float(y), 2)

    def show_frames(self, background: bool = False) -> None:

        video, t1, t2 = self.video.value, self.t1.value, self.t2.value

        def done(pair):
            for img, rgb in zip(self.frames.children, pair):
                img.value = png_bytes(rgb)
            self.frames.layout.display = "flex"

        self.frame_runner.run(lambda: frames_at(video, t1, t2, size=240), done, background)


def png_bytes(rgb: np.ndarray) -> bytes:

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


class AugmentationPanel(Panel):
    """CVRL views (consistent or per-frame), FAME, temporal gradient and flow, with the sampled parameters."""

    title = "Augmentations"
    run_label = "Sample views"

    def build(self):

        self.method = W.Dropdown(options=list(AUGMENT_METHODS), value="cvrl", description="method", layout=W.Layout(width="220px"))
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        self.strength = W.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1, description="jitter s",
                                      continuous_update=False)
        self.start = W.FloatText(value=0.0, description="start (s)", layout=W.Layout(width="160px"))
        self.enabled = W.SelectMultiple(options=list(AUGMENTATIONS), value=list(AUGMENTATIONS), rows=6,
                                        description="allowed", layout=W.Layout(width="220px"))
        self.inconsistent = W.Checkbox(value=False, description="per-frame draws (inconsistent)")
        self.as_trained = W.Checkbox(value=True, description="as the encoder was trained (video: checkpoints)")
        self.figure = figure_widget(height=900)
        self.params = W.HTML()
        self.params_box = W.Accordion(children=[self.params], selected_index=None)
        self.params_box.set_title(0, "sampled parameters (JSON)")
        self._rerun_on(self.method, self.seed, self.strength, self.start, self.enabled, self.inconsistent,
                       self.as_trained)
        return [W.HBox([self.method, self.seed, self.strength, self.start]),
                W.HBox([self.enabled, W.VBox([self.inconsistent, self.as_trained])]), self.figure, self.params_box]

    def clear(self) -> None:
        super().clear()
        clear_figure(self.figure)
        self.params.value = ""

    def run(self, background: bool = False) -> None:

        video, strength = self.video.value, float(self.strength.value)
        options = dict(method=self.method.value, seed=int(self.seed.value), enabled=tuple(self.enabled.value),
                       inconsistent=bool(self.inconsistent.value), start=float(self.start.value),
                       encoder=self.encoder.value if self.as_trained.value else None)

        def done(out):
            result, fig = out
            show_figure(self.figure, fig)
            self.result = result.to_dict()
            text = json.dumps(self.result, indent=1, default=str)
            self.params.value = f"<pre style='font-size:11px;max-height:400px;overflow:auto'>{html.escape(text)}</pre>"

        # the settings are checked in the run (a bad one is the status line's sentence, not a traceback)
        self.runner.run(lambda: augment_view(video, config=CvrlConfig(strength=strength), **options), done, background)


class GradCamPanel(Panel):
    """Text-conditioned Grad-CAM overlays with a frame slider; opacity and frame redraw without recomputing.
    The frames are spread over [from, to] (0 and 0: the whole clip); in the Explorer they follow the retrieval
    panel's query and its top moment, or the moment whose button was pressed."""

    title = "Grad-CAM"
    run_label = "Explain"

    def build(self):

        self.query = W.Text(description="query", placeholder="what should the frames show?", continuous_update=False,
                            layout=W.Layout(width="420px"))
        self.method = W.Dropdown(options=list(CAM_METHODS), value="gradcam++", description="method")
        self.num_frames = W.IntSlider(value=6, min=1, max=16, description="frames", continuous_update=False)
        self.opacity = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False)
        self.start = W.FloatText(value=0.0, description="from (s)", layout=W.Layout(width="170px"))
        self.end = W.FloatText(value=0.0, description="to (s)", layout=W.Layout(width="170px"),
                               tooltip="0 and 0: the whole clip")
        self.frame = W.IntSlider(value=0, min=0, max=0, description="frame")
        self.image = W.Image(format="png", width=640)
        self.caption = W.HTML()
        self._rerun_on(self.query, self.method, self.num_frames)
        self.opacity.observe(lambda _: self.redraw(), names="value")
        self.frame.observe(lambda _: self.redraw(), names="value")
        self._last = None
        return [W.HBox([self.query, self.method]), W.HBox([self.num_frames, self.start, self.end]),
                W.HBox([self.opacity, self.frame]), self.image, self.caption]

    def follow(self, query: str | None, start: float, end: float) -> None:
        """Look at [start, end] (and `query` when given) on the next run, as a linked retrieval asks."""
        self._quiet = True  # no run per field: the user presses Explain
        try:
            before = (self.query.value, self.start.value, self.end.value)
            if query:
                self.query.value = query
            self.start.value, self.end.value = round(float(start), 2), round(float(end), 2)
        finally:
            self._quiet = False
        if (self._last is not None or self.runner.busy) and before != (self.query.value, self.start.value,
                                                                          self.end.value):
            # the maps shown were of the previous query or moment: they go, and the status says what to do
            self._forget()
            self.runner.status.value = (f"Now “{html.escape(self.query.value)}” at {self.start.value:g}-"
                                        f"{self.end.value:g} s: press {self.run_label} to see where the frames match it.")

    def _forget(self) -> None:
        """Drop the run in flight and the maps shown (the window and query stay)."""
        self.runner.drop()
        self._last, self.result = None, None
        self.image.value, self.caption.value = b"", ""

    def clear(self) -> None:
        super().clear()
        self._forget()
        self.start.value = self.end.value = 0.0

    def run(self, background: bool = False) -> None:

        video, query = self.video.value, self.query.value
        start, end = float(self.start.value), float(self.end.value)
        options = dict(encoder=self.encoder.value, frames=int(self.num_frames.value), method=self.method.value,
                       opacity=float(self.opacity.value))

        def work():  # 0 and 0: the whole clip; any other window is the backend's to check (a reversed one is said)
            window = {} if start == end == 0 else {"start": start, "end": end}
            return gradcam_view(video, query, progress=self.runner.progress, **options, **window)

        def done(out):
            result, _fig = out
            self._last = result
            self.frame.max = len(result.times) - 1
            self.result = {"query": result.query, "method": result.method, "encoder": result.encoder_id,
                           "times": [float(t) for t in result.times], "frames": result.summary(),
                           "note": result.extras.get("blank")}
            self.redraw()

        self.runner.run(work, done, background)

    def redraw(self) -> None:
        if self._last is None:
            return
        i = min(self.frame.value, len(self._last.times) - 1)
        self.image.value = png_bytes(self._last.overlays(self.opacity.value)[i])
        score = "" if self._last.scores is None else f", cosine to the query {float(self._last.scores[i]):.3f}"
        blank = self._last.extras.get("blank")
        self.caption.value = (f"frame {i + 1}/{len(self._last.times)} at {self._last.times[i]:.1f} s{score}"
                              + (f"<br><b>Note</b>: {html.escape(blank)}." if blank else ""))


class ComparePanel(Panel):
    """Two encoders on the same clip and query, side by side: both saliency curves on one axis, each encoder's
    moment buttons and 2D map in its own column, and their agreement (IoU of the top moments)."""

    title = "Compare encoders"
    run_label = "Compare"

    def __init__(self, video: str | Path | None = None, encoder: str | None = None, *,
                 encoders: Sequence[str] | None = None, **kwargs):
        """`encoders=(A, B)` preselects the two (added to the lists when not registered offline)."""
        self._wanted = list(encoders or [])
        super().__init__(video, encoder or (self._wanted[0] if self._wanted else None), **kwargs)

    def build(self):
        if not self.shared_source:  # A and B are this panel's encoders: the source's own list would be ignored
            self.encoder.layout.display = "none"
        choices = list(dict.fromkeys([*self._wanted, *self.encoder.options]))
        first = self._wanted[0] if self._wanted else self.encoder.value
        other = self._wanted[1] if len(self._wanted) > 1 else next((c for c in choices if c != first), None)
        self.query = W.Text(description="query", placeholder="describe the moment, then Enter", continuous_update=False,
                            layout=W.Layout(width="480px"))
        self.encoder_a = W.Dropdown(options=choices, value=first, description="A",
                                    layout=W.Layout(width="330px"))
        self.encoder_b = W.Dropdown(options=choices, value=other, description="B", layout=W.Layout(width="330px"))
        self.top_k = W.IntSlider(value=5, min=1, max=10, description="top-k", continuous_update=False)
        self.summary = W.HTML()
        self.player = VideoPlayer()
        self.saliency = figure_widget(height=320, title="saliency of both encoders")
        self.columns = []
        for letter in "AB":
            header, chips = W.HTML(f"<b>{letter}</b>"), W.HBox(layout=W.Layout(flex_flow="row wrap"))
            fig = figure_widget(height=460, width=520, title=f"{letter}: 2D temporal map")
            self.columns.append((header, chips, fig))
        self._rerun_on(self.query, self.top_k)
        # another encoder A or B: the comparison shown was of the previous pair (nothing stale stays on screen)
        for dropdown in (self.encoder_a, self.encoder_b):
            dropdown.observe(lambda _change: None if self._quiet else self._inputs_changed(), names="value")
        self.encoder.observe(lambda _change: self._follow_offers(), names="options")
        cols = [W.VBox(list(c), layout=W.Layout(width="50%")) for c in self.columns]
        return [W.HBox([self.query, self.top_k]), W.HBox([self.encoder_a, self.encoder_b]), self.summary,
                self.player, self.saliency, W.HBox(cols)]

    def _follow_offers(self) -> None:
        """The shared list grew (an adapter trained in Temporal scaling): offer it as A or B, keeping the picks."""
        self._quiet = True
        try:
            for dropdown in (self.encoder_a, self.encoder_b):
                current = dropdown.value
                dropdown.options = list(dict.fromkeys([*(o for o in dropdown.options if o is not None),
                                                       *self.encoder.options]))
                # B was empty (a single encoder was offered): the first other one now
                dropdown.value = current if current is not None else next(
                    (o for o in dropdown.options if o != self.encoder_a.value), None)
        finally:
            self._quiet = False

    def clear(self) -> None:
        super().clear()
        self.summary.value = ""
        clear_figure(self.saliency)
        for header, chips, fig in self.columns:
            header.value, chips.children = "", []
            clear_figure(fig)
        self.player.clear()

    def run(self, background: bool = False) -> None:
        video, query, runner = self.video.value, self.query.value, self.runner
        encoders = (self.encoder_a.value, self.encoder_b.value)
        offered = set(self.encoder_a.options)
        top_k = int(self.top_k.value)

        def work():
            if encoders[1] is None or len(offered) < 2:  # (the same one picked twice: compare_encoders says so)
                raise QueryError(f"Compare needs two different encoders; only {encoders[0]} is offered here (train "
                                 "an adapter, or fetch CLIP weights with `momentlens weights get clip:ViT-B/32`).")
            out = compare_view(video, query, encoders, top_k=top_k, progress=runner.progress,
                               should_stop=runner.should_stop)
            playable_path(video)
            return out

        def done(out):
            cmp, figs = out
            self.player.load(video)
            show_figure(self.saliency, figs["saliency"], on_click=lambda x, _y: self.player.seek(x))
            for (header, chips, fig), r, best, key, colour, letter in zip(
                    self.columns, (cmp.a, cmp.b), (cmp.best_iou_a, cmp.best_iou_b), ("map_a", "map_b"),
                    ENCODER_COLOURS, "AB", strict=True):
                header.value = f"<b style='color:{colour}'>■ {letter}: {html.escape(r.encoder)}</b>"
                chips.children = [self._chip(i, m, float(best[i - 1])) for i, m in enumerate(r.moments, start=1)]
                show_figure(fig, figs[key], on_click=lambda x, _y: self.player.seek(x))
            self.summary.value = f"<b>Agreement</b>: {html.escape(cmp.summary())}"
            self.result = cmp.to_dict()

        runner.run(work, done, background)

    def _chip(self, rank, moment, best: float):
        b = W.Button(description=f"#{rank} {moment.start:.1f}–{moment.end:.1f} s · IoU {best:.2f}",
                     tooltip="play this moment; IoU = best overlap with the other encoder's moments",
                     layout=W.Layout(width="auto"))
        b.on_click(lambda _: self.player.play_moment(moment.start, moment.end))
        return b


class LibraryPanel(Panel):
    """Search a video library (built with `momentlens index add`): the best moments across its videos as
    thumbnails; a moment's button opens that video in the player and plays the moment."""

    title = "Library"
    run_label = "Search"

    def __init__(self, library: str | Path | None = None, **kwargs):
        self.library = library  # None: $MOMENTLENS_LIBRARY (backends.retrieval.library.library_dir)
        super().__init__(with_source=False, **kwargs)

    def build(self):
        self.query = W.Text(description="query", placeholder="describe the moment, then Enter",
                            continuous_update=False, layout=W.Layout(width="520px"))
        self.top_k = W.IntSlider(value=8, min=1, max=16, description="moments", continuous_update=False)
        self.grid = W.GridBox(layout=W.Layout(grid_template_columns="repeat(4, 200px)", grid_gap="8px"))
        self.caveat = W.HTML()  # the library may not hold what was asked (SearchResult.caveat)
        self.player = VideoPlayer()
        self._rerun_on(self.query, self.top_k)
        return [W.HBox([self.query, self.top_k]), self.caveat, self.grid, self.player]

    def clear(self) -> None:
        super().clear()
        self.grid.children = []
        self.caveat.value = ""

    def run(self, background: bool = False) -> None:
        query, k = self.query.value, int(self.top_k.value)

        def done(out):
            result, thumbs = out
            cells = []
            for i, (hit, thumb) in enumerate(zip(result.results, thumbs), start=1):
                image = W.Image(value=png_bytes(thumb) if thumb is not None else b"", format="png",
                                layout=W.Layout(width="196px"))
                # the name on its own line (cut with an ellipsis, whole in the tooltip) so the times stay readable
                name = html.escape(Path(hit.video).name)
                label = W.HTML(f'<div title="{html.escape(hit.video)}" style="width:192px;overflow:hidden;'
                               f'text-overflow:ellipsis;white-space:nowrap"><b>#{i}</b> {name}</div>')
                button = W.Button(description=f"▶ {hit.start:.1f}–{hit.end:.1f} s · {hit.confidence:.2f}",
                                  tooltip=f"{hit.video}: play {hit.start:.2f}-{hit.end:.2f} s (score {hit.score:.3f}, "
                                          f"confidence {hit.confidence:.2f}: {CONFIDENCE_MEANING})",
                                  layout=W.Layout(width="196px"))
                button.on_click(lambda _b, h=hit: self.open(h.video, h.start, h.end, background=True))
                cells.append(W.VBox([image, label, button]))
            self.grid.children = cells
            self.caveat.value = "<br>".join(f"<b>⚠</b> {html.escape(n)}" for n in result.notes())
            self.result = result.to_dict()

        self.runner.run(lambda: library_search_view(query, self.library, top_k=k), done, background)

    def open(self, video: str, start: float, end: float, background: bool = False) -> None:
        """Load a library video into the player and play one of its moments (it stops at `end`); a video gone
        since it was indexed is said in the status line."""

        def done(_playable):
            self.player.load(video)
            self.player.play_moment(start, end)

        self.runner.run(lambda: playable_path(video), done, background)


class ScalingPanel(Panel):
    """Per-layer temporal scales (LiteVL) read by name from checkpoints, overlaid; or train a temporal
    adapter on the chosen video (plus the package-shipped clips) and plot its scales."""

    title = "Temporal scaling"
    run_label = "Plot scales"

    def __init__(self, checkpoints: Sequence[str | Path] = (), video: str | Path | None = None,
                 encoder: str | None = None, **kw):
        self._initial = "\n".join(map(str, checkpoints))
        super().__init__(video, encoder, **kw)

    def build(self):
        self.checkpoints = W.Textarea(value=self._initial, description="checkpoints",
                                      placeholder="one checkpoint path per line (ours or any state dict)",
                                      layout=W.Layout(width="620px", height="70px"))
        self.epochs = W.IntSlider(value=5, min=1, max=30, description="epochs", continuous_update=False)
        self.train_button = W.Button(description="Train adapter", tooltip="self-supervised, CVRL-style InfoNCE")
        self.train_button.on_click(lambda _: self.train(background=True))
        self.figure = figure_widget(height=420)
        self.summary = W.HTML()
        return [self.checkpoints, W.HBox([self.epochs, self.train_button]), self.summary, self.figure]

    def clear(self) -> None:
        """Another clip changes nothing here: the scales belong to the checkpoints, not to the clip."""

    def _inputs_changed(self) -> None:
        """A training in flight goes on: its checkpoint is valid whatever clip or encoder is picked meanwhile."""

    def checkpoint_paths(self) -> list[str]:
        return [line.strip() for line in self.checkpoints.value.splitlines() if line.strip()]

    def run(self, background: bool = False) -> None:

        sources = self.checkpoint_paths()
        if not sources:
            self.runner.status.value = "Give a checkpoint path (one per line), or train an adapter."
            return
        self.runner.run(lambda: scaling_view(sources), self._show_scales, background)

    def _show_scales(self, out) -> None:
        data, fig = out
        show_figure(self.figure, fig)
        self.result = data
        groups = data["checkpoints"]
        self.summary.value = " · ".join(f"{html.escape(Path(g['checkpoint']).name)}: {len(g['layers'])} scales"
                                        for g in groups)

    def train(self, background: bool = False, out: str | Path | None = None, overwrite: bool = False) -> None:
        """Train a temporal adapter on the chosen clip plus the package-shipped ones (progress bar, Stop), add its
        checkpoint to the list and plot the scales. The checkpoint goes to `out`, which must not exist unless
        `overwrite`; by default to a new file under the cache's adapters folder (never one trained before)."""

        video, encoder, epochs, runner = self.video.value, self.encoder.value, int(self.epochs.value), self.runner

        def work():
            videos = adapter_training_videos(video)  # the chosen clip unreadable: said, not skipped
            target = Path(out).expanduser() if out else new_adapter_path(video, encoder, epochs)
            if out and not overwrite:
                there = [p for p in (target, *loss_curve_paths(target)) if p.exists()]
                if there:
                    raise MomentLensError(f"{there[0]} already exists: pass another out=, or overwrite=True to "
                                          "replace it.")
            ckpt = train_adapter_on_videos(videos, target, encoder=encoder, epochs=epochs, progress=runner.progress,
                                           should_stop=runner.should_stop, show_progress=False)
            paths = list(dict.fromkeys([*self.checkpoint_paths(), str(ckpt)]))
            return paths, scaling_view(paths), ckpt

        def done(out):
            paths, view, ckpt = out
            self.checkpoints.value = "\n".join(paths)
            self._show_scales(view)
            # to pick as an encoder (Compare's A or B too), named as the checkpoint list names it (resolved)
            self.source.offer(f"adapter:{Path(ckpt).resolve()}")

        runner.run(work, done, background)


def new_adapter_path(video: str, encoder: str, epochs: int) -> Path:
    """`<cache>/adapters/<clip>-<encoder>-<epochs>ep.pt`, numbered (-2, -3, ...) past the files already there: a
    training from the panel never replaces an adapter trained before."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder)[-40:].strip("_")
    stem = f"{Path(video).stem or 'clip'}-{slug}-{epochs}ep"
    folder = trained_adapters_dir()
    target, n = folder / f"{stem}.pt", 1
    while target.exists() or any(p.exists() for p in loss_curve_paths(target)):
        n += 1
        target = folder / f"{stem}-{n}.pt"
    return target


class Explorer:
    """Every panel in tabs, on one shared video and encoder; Grad-CAM follows the retrieval panel."""

    def __init__(self, video: str | Path | None = None, encoder: str | None = None,
                 checkpoints: Sequence[str | Path] = ()):
        self.source = Source(video, encoder)
        shared = dict(source=self.source)
        self.retrieval = RetrievalPanel(**shared)
        self.compare = ComparePanel(**shared)
        self.similarity = SelfSimilarityPanel(**shared)
        self.augmentation = AugmentationPanel(**shared)
        self.gradcam = GradCamPanel(**shared)
        self.scaling = ScalingPanel(checkpoints, **shared)
        self.panels = [self.retrieval, self.compare, self.similarity, self.augmentation, self.gradcam, self.scaling]
        # linked views: Grad-CAM looks at the last query's top moment, or at the moment whose button was pressed
        self.retrieval.on_result.append(
            lambda r: r.moments and self.gradcam.follow(r.query, r.moments[0].start, r.moments[0].end))
        self.retrieval.on_moment.append(lambda start, end: self.gradcam.follow(None, start, end))
        self.tabs = W.Tab(children=[p.widget for p in self.panels])
        for i, p in enumerate(self.panels):
            self.tabs.set_title(i, p.title)
        self.widget = W.VBox([self.source, self.tabs])

    def _ipython_display_(self):

        display(self.widget)
