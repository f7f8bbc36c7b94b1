"""Grad-CAM tab: where in each frame the encoder finds the query (target: frame-query cosine similarity)."""

from __future__ import annotations

import gradio as gr

from app.common import (
    GPU_QUEUE,
    AppContext,
    export_figures,
    require_video,
    user_errors,
    write_json,
)
from app.source import Source
from backends.figures.gradcam import gradcam_figure, save_pngs
from backends.views.gradcam import gradcam_view

SUMMARY_COLUMNS = ["frame", "time (s)", "cosine to query", "peak x", "peak y", "mean heat", "hot area"]


def summary_rows(result) -> list[list]:
    return [[r["index"] + 1, r["time"], r["score"], r["peak_norm"][0], r["peak_norm"][1], r["mean"], r["hot_fraction"]]
            for r in result.summary()]


def build_gradcam_tab(ctx: AppContext, source: Source) -> None:
    with gr.Row():
        query = gr.Textbox(label="Query", value="a rabbit", scale=4, max_lines=2)
        method = gr.Dropdown(["gradcam", "gradcam++", "eigencam"], value="gradcam", label="Method",
                             info="EigenCAM is a cheap query-free preview")
        frames = gr.Slider(1, 16, value=8, step=1, label="Frames")
        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heat-map opacity")
        run = gr.Button("Explain", variant="primary", elem_id="ml-gradcam-btn")
    plot = gr.Plot(label="Grad-CAM overlays (slider: frame)", elem_id="ml-gradcam")
    table = gr.Dataframe(headers=SUMMARY_COLUMNS, label="Per-frame summary (x, y as fractions of the frame)",
                         interactive=False, column_count=len(SUMMARY_COLUMNS))
    with gr.Accordion("Export", open=False):
        export = gr.Button("Export summary and figure")
        export_note = gr.Markdown(elem_classes=["ml-note"])
        files = gr.File(label="Downloads", file_count="multiple", interactive=False)
    last = gr.State(None)

    @user_errors
    def run_gradcam(video, query_text: str, encoder: str = ctx.encoder, cam_method: str = "gradcam",
                    frame_count: float = 8, heat_opacity: float = 0.5):

        path = require_video(video)
        result, fig = gradcam_view(path, query_text, encoder=ctx.resolve_encoder(encoder), frames=int(frame_count), method=cam_method,
                                   opacity=float(heat_opacity))
        return fig, summary_rows(result), {"result": result, "opacity": float(heat_opacity)}

    @user_errors
    def restyle(state, heat_opacity: float = 0.5):
        """A new opacity redraws the overlays without recomputing the maps."""

        if not state:
            return gr.skip(), state
        state = {**state, "opacity": float(heat_opacity)}
        return gradcam_figure(state["result"], float(heat_opacity)), state

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: run Grad-CAM first.")

        out = ctx.session_dir(request, "gradcam")
        pngs = [str(p) for p in save_pngs(state["result"], out / "frames", state["opacity"])
                if p.name.startswith("frame_")]
        figs, note = export_figures({"gradcam": gradcam_figure(state["result"], state["opacity"])}, out)
        return [write_json(state["result"].to_dict(), out / "gradcam.json")] + figs + pngs, note

    ev = run.click(run_gradcam, [source.video, query, source.encoder, method, frames, opacity], [plot, table, last],
                   api_name="gradcam", concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    opacity.release(restyle, [last, opacity], [plot, last], api_name="gradcam_opacity")
    export.click(run_export, last, [files, export_note], api_name="gradcam_export")
    source.heavy_events.append(ev)
