"""One ipywidgets panel per view, each a thin wrapper over the backend call the web app uses too.

    from widgets import Explorer, RetrievalPanel
    panel = RetrievalPanel(video="clip.mp4"); panel          # shows the panel in a notebook
    panel.query.value = "a dog runs"                          # recomputes (continuous_update=False)
    panel.result                                              # the last result as plain Python data

Every panel has `.widget` (what is displayed), `.result` (plain data of the last run) and `.run()`.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from widgets.common import Runner, VideoPicker, encoder_choices, show_figure, video_player_html


class Panel:
    """Video picker, encoder choice and a runner above the panel's own controls and outputs."""

    title = "panel"

    def __init__(self, video: str | Path | None = None, encoder: str | None = None, background: bool = False,
                 with_video: bool = True):
        self.video = VideoPicker(video) if with_video else None
        choices = encoder_choices()
        if encoder and encoder not in choices:
            choices = [encoder] + choices
        self.encoder = W.Dropdown(options=choices, value=encoder or choices[0], description="encoder",
                                  layout=W.Layout(width="360px"))
        self.runner = Runner(background)
        self.result: dict | None = None
        self.go_button = W.Button(description="Run", button_style="primary")
        self.go_button.on_click(lambda _: self.run())
        header = [self.video] if with_video else []
        self.widget = W.VBox(header + [W.HBox([self.encoder, self.go_button]), *self.build(), self.runner])

    def build(self) -> list[W.Widget]:  # controls and outputs, defined by each panel
        return []

    def run(self) -> None:
        raise NotImplementedError

    def _observe(self, *controls: W.Widget) -> None:
        for c in controls:
            c.observe(lambda _: self.run(), names="value")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class RetrievalPanel(Panel):
    """Text query -> top-k moments (table + buttons that seek the player), saliency curve and 2D map."""

    title = "Moment retrieval"

    def build(self):
        self.query = W.Text(description="query", placeholder="describe the moment", continuous_update=False,
                            layout=W.Layout(width="520px"))
        self.top_k = W.IntSlider(value=5, min=1, max=10, description="top-k", continuous_update=False)
        self.fps = W.Dropdown(options=[0.5, 1.0, 2.0, 4.0], value=1.0, description="fps")
        self.go_button.description = "Find moments"
        self.chips = W.HBox()
        self.table = W.HTML()
        self.player = W.HTML()
        self.saliency = go.FigureWidget(layout=dict(height=320, title="saliency"))
        self.map = go.FigureWidget(layout=dict(height=420, width=520, title="2D temporal map"))
        self._observe(self.query, self.top_k)
        return [W.HBox([self.query, self.top_k, self.fps]), self.chips, W.HBox([self.player, self.table]),
                W.HBox([self.saliency, self.map])]

    def run(self) -> None:
        from backends.retrieval import retrieve
        from backends.retrieval.figures import saliency_figure, temporal_map_figure

        video = self.video.value

        def work():
            return retrieve(video, self.query.value, encoder=self.encoder.value, top_k=self.top_k.value,
                            fps=self.fps.value, progress=self.runner.progress, should_stop=self.runner.should_stop)

        def done(r):
            show_figure(self.saliency, saliency_figure(r, top=min(3, len(r.moments))))
            show_figure(self.map, temporal_map_figure(r.map, r.moments, title=f"2D temporal map, N = {r.map.num_clips}"))
            rows = r.table()
            self.table.value = _table_html(rows)
            self.chips.children = [self._chip(i, m) for i, m in enumerate(r.moments, start=1)]
            self.player.value = video_player_html(video)
            self.result = {**r.to_json(), "table": rows, "scorer": r.scorer,
                           "saliency": {"times": r.saliency_times.tolist(), "values": r.saliency.tolist()}}

        self.runner.run(work, done)

    def _chip(self, rank, moment):
        b = W.Button(description=f"#{rank} {moment.start:.1f}–{moment.end:.1f} s", tooltip="play from here",
                     layout=W.Layout(width="auto"))
        b.on_click(lambda _: self.seek(moment.start))
        return b

    def seek(self, seconds: float) -> None:
        """Show the player starting at `seconds` (what a moment button does)."""
        self.player.value = video_player_html(self.video.value, start=seconds)


def _table_html(rows: list[dict]) -> str:
    head = "".join(f"<th style='padding:2px 8px'>{k}</th>" for k in ("rank", "start", "end", "length", "score"))
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{r[k]}</td>"
                                    for k in ("rank", "start", "end", "length", "score")) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + head + '</tr>'}{body}</table>"


class SelfSimilarityPanel(Panel):
    """RepNet / cosine self-similarity with event boundaries; pick two times to see their frames."""

    title = "Self-similarity"

    def build(self):
        self.kind = W.ToggleButtons(options=["repnet", "cosine"], value="repnet", description="kind")
        self.fps = W.Dropdown(options=[0.5, 1.0, 2.0], value=1.0, description="fps")
        self.figure = go.FigureWidget(layout=dict(height=700))
        self.t1 = W.FloatText(value=0.0, description="t1 (s)", layout=W.Layout(width="160px"))
        self.t2 = W.FloatText(value=10.0, description="t2 (s)", layout=W.Layout(width="160px"))
        self.frames = W.HBox([W.Image(format="png", width=260), W.Image(format="png", width=260)])
        self.kind.observe(lambda _: self.run(), names="value")
        for t in (self.t1, self.t2):
            t.observe(lambda _: self.show_frames(), names="value")
        return [W.HBox([self.kind, self.fps]), self.figure, W.HBox([self.t1, self.t2]), self.frames]

    def run(self) -> None:
        from backends.views.similarity import self_similarity_view

        def done(out):
            result, fig = out
            show_figure(self.figure, fig)
            self.result = result.to_dict()

        self.runner.run(lambda: self_similarity_view(self.video.value, self.encoder.value, kind=self.kind.value,
                                                     fps=self.fps.value, progress=self.runner.progress), done)

    def show_frames(self) -> None:
        from backends.views.similarity import frames_at

        def done(pair):
            for img, rgb in zip(self.frames.children, pair):
                img.value = _png(rgb)

        self.runner.run(lambda: frames_at(self.video.value, self.t1.value, self.t2.value, size=240), done)


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


class AugmentationPanel(Panel):
    """CVRL views (consistent or per-frame), FAME, temporal gradient and flow, with the sampled parameters."""

    title = "Augmentations"

    def build(self):
        from backends.views.augment import METHODS

        self.method = W.Dropdown(options=list(METHODS), value="cvrl", description="method")
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        self.strength = W.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1, description="strength",
                                      continuous_update=False)
        self.inconsistent = W.Checkbox(value=False, description="per-frame draws (inconsistent)")
        self.figure = go.FigureWidget(layout=dict(height=900))
        self.params = W.HTML()
        self._observe(self.method, self.seed, self.strength, self.inconsistent)
        return [W.HBox([self.method, self.seed, self.strength, self.inconsistent]), self.figure, self.params]

    def run(self) -> None:
        from backends.views.augment import CvrlConfig, augment_view

        def work():
            return augment_view(self.video.value, self.method.value, int(self.seed.value),
                                config=CvrlConfig(strength=float(self.strength.value)),
                                inconsistent=bool(self.inconsistent.value))

        def done(out):
            result, fig = out
            show_figure(self.figure, fig)
            self.result = result.to_dict()
            self.params.value = f"<pre style='font-size:11px'>{html.escape(str(self.result.get('cvrl', ''))[:2000])}</pre>"

        self.runner.run(work, done)


class GradCamPanel(Panel):
    """Text-conditioned Grad-CAM overlays with a frame slider; opacity changes redraw without recomputing."""

    title = "Grad-CAM"

    def build(self):
        from backends.views.gradcam_options import METHODS

        self.query = W.Text(description="query", continuous_update=False, layout=W.Layout(width="420px"))
        self.method = W.Dropdown(options=list(METHODS), value="gradcam++", description="method")
        self.num_frames = W.IntSlider(value=6, min=1, max=16, description="frames", continuous_update=False)
        self.opacity = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False)
        self.frame = W.IntSlider(value=0, min=0, max=0, description="frame")
        self.image = W.Image(format="png", width=640)
        self.caption = W.HTML()
        self._observe(self.query, self.method, self.num_frames)
        self.opacity.observe(lambda _: self.redraw(), names="value")
        self.frame.observe(lambda _: self.redraw(), names="value")
        self._last = None
        return [W.HBox([self.query, self.method]), W.HBox([self.num_frames, self.opacity, self.frame]),
                self.image, self.caption]

    def run(self) -> None:
        from backends.views.gradcam import gradcam_view

        def done(out):
            result, _fig = out
            self._last = result
            self.frame.max = len(result.times) - 1
            self.result = {"query": result.query, "method": result.method, "times": list(map(float, result.times)),
                           "frames": result.summary()}
            self.redraw()

        self.runner.run(lambda: gradcam_view(self.video.value, self.query.value, encoder=self.encoder.value,
                                             frames=self.num_frames.value, method=self.method.value,
                                             opacity=self.opacity.value), done)

    def redraw(self) -> None:
        if self._last is None:
            return
        i = min(self.frame.value, len(self._last.times) - 1)
        self.image.value = _png(self._last.overlays(self.opacity.value)[i])
        self.caption.value = (f"frame {i + 1}/{len(self._last.times)} at {self._last.times[i]:.1f} s, "
                              f"cosine to the query {float(self._last.scores[i]):.3f}")


class ScalingPanel(Panel):
    """Per-layer temporal scales (LiteVL) read by name from one or more checkpoints, overlaid."""

    title = "Temporal scaling"

    def __init__(self, checkpoints=(), **kw):
        kw.setdefault("with_video", False)
        self._initial = "\n".join(map(str, checkpoints))
        super().__init__(**kw)

    def build(self):
        self.checkpoints = W.Textarea(value=self._initial, description="checkpoints",
                                      placeholder="one checkpoint path per line", layout=W.Layout(width="620px"))
        self.figure = go.FigureWidget(layout=dict(height=420))
        self.go_button.description = "Plot scales"
        return [self.checkpoints, self.figure]

    def run(self) -> None:
        from backends.views.scaling import scaling_view

        paths = [line.strip() for line in self.checkpoints.value.splitlines() if line.strip()]

        def done(out):
            data, fig = out
            show_figure(self.figure, fig)
            self.result = data

        self.runner.run(lambda: scaling_view(paths), done)


class Explorer:
    """All panels in tabs, on one video and encoder."""

    def __init__(self, video: str | Path | None = None, encoder: str | None = None, checkpoints=()):
        self.panels = [RetrievalPanel(video, encoder), SelfSimilarityPanel(video, encoder),
                       AugmentationPanel(video, encoder), GradCamPanel(video, encoder),
                       ScalingPanel(checkpoints, encoder=encoder)]
        self.widget = W.Tab(children=[p.widget for p in self.panels])
        for i, p in enumerate(self.panels):
            self.widget.set_title(i, p.title)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
