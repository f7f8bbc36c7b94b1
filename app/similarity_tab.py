"""Self-similarity tab: the TSM heat map (RepNet or cosine) with event boundaries; clicking a cell shows the
two frames it compares."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app.common import (
    AppContext,
    export_figures,
    export_section,
    progress_bridge,
    require_video,
    user_errors,
    write_json,
)
from app.source import Source
from backends.views.similarity import frames_at, self_similarity_view

# Clicking a heat-map cell seeks the player to frame i, copies its two times into the inputs below the plot
# and presses "Show frames".
# The plot is re-created on every run, so the handler is attached to whichever plot div is current.
CELL_CLICK_JS = """
const bind = () => {
  const plot = document.querySelector('#ml-tsm .js-plotly-plot');
  if (!plot || plot.dataset.mlBound === '1' || typeof plot.on !== 'function') return;
  plot.dataset.mlBound = '1';
  plot.on('plotly_click', (data) => {
    const p = data.points && data.points.find((q) => q.data.type === 'heatmap');
    if (!p) return;
    window.mlSetNumber('ml-t1', p.y);  // PLAYER_JS in app/source.py
    window.mlSetNumber('ml-t2', p.x);
    window.mlSeek && window.mlSeek(p.y);  // the player jumps to frame i
    setTimeout(() => document.querySelector('#ml-frames-btn')?.click(), 150);
  });
};
setInterval(bind, 700);
"""


def build_similarity_tab(ctx: AppContext, source: Source) -> None:
    with gr.Row():
        kind = gr.Radio(["repnet", "cosine"], value="repnet", label="Matrix",
                        info="RepNet: softmax over negative squared distances / 13.544; cosine: raw similarity")
        features = gr.Radio(["visual", "joint"], value="visual", label="Features",
                            info="raw visual features, or the text-frame joint embedding")
        run = gr.Button("Compute self-similarity", variant="primary", elem_id="ml-tsm-btn")
    summary = gr.Markdown(elem_classes=["ml-note"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            plot = gr.Plot(label="Temporal self-similarity (click a cell: its two frames, and the player seeks)", elem_id="ml-tsm")
        with gr.Column(scale=2):
            with gr.Row():
                t1 = gr.Number(value=0.0, label="Frame i at (s)", elem_id="ml-t1")
                t2 = gr.Number(value=10.0, label="Frame j at (s)", elem_id="ml-t2")
            show = gr.Button("Show frames", elem_id="ml-frames-btn")
            frame_i = gr.Image(label="frame i", interactive=False, height=220, elem_id="ml-frame-i")
            frame_j = gr.Image(label="frame j", interactive=False, height=220, elem_id="ml-frame-j")
    gr.HTML("", js_on_load=CELL_CLICK_JS, visible=True, elem_id="ml-tsm-js", padding=False)
    export, export_note, files = export_section("Export matrix and figure")
    last = gr.State(None)

    @user_errors
    def run_tsm(video, encoder: str = ctx.encoder, matrix: str = "repnet", fps: float = 1.0,
                feature_kind: str = "visual", request: gr.Request = None, progress=gr.Progress()):

        path = require_video(video)
        stop = ctx.stop_event(request)
        stop.clear()
        result, fig = self_similarity_view(path, ctx.resolve_encoder(encoder), kind=matrix, fps=float(fps or 1.0),
                                           progress=progress_bridge(progress, stop), features=feature_kind)
        bounds = ", ".join(f"{b:.1f}" for b in result.boundaries) or "none"
        text = (f"{len(result.times)} frames of {Path(path).name} · **{len(result.boundaries)} boundaries** at "
                f"{bounds} s · {len(result.events)} events (k-means, k = {result.n_clusters}) · encoder `{result.encoder}`")
        return fig, text, {"result": result, "figure": fig}

    @user_errors
    def show_frames(video, time_i: float = 0.0, time_j: float = 10.0):

        path = require_video(video)
        a, b = frames_at(path, float(time_i or 0.0), float(time_j or 0.0), size=360)
        return a, b

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: compute the self-similarity first.")
        out = ctx.session_dir(request, "tsm")
        paths = [write_json(state["result"].to_dict(), out / "tsm.json")]
        figs, note = export_figures({"tsm": state["figure"]}, out)
        return paths + figs, note

    source.heavy(run.click, run_tsm, [source.video, source.encoder, kind, source.fps, features], [plot, summary, last],
                 api_name="tsm", what="the self-similarity matrix")
    show.click(show_frames, [source.video, t1, t2], [frame_i, frame_j], api_name="tsm_frames",
               concurrency_id="video", concurrency_limit=2)
    export.click(run_export, last, [files, export_note], api_name="tsm_export")
    source.clears((plot, None), (summary, ""), (last, None), (frame_i, None), (frame_j, None), (files, None),
                  (export_note, ""))
