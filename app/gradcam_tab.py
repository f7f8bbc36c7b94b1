"""Grad-CAM tab: where in each frame the encoder finds the query (target: frame-query cosine similarity).

The tab follows the retrieval tab: a retrieval sets its query and its window to the top moment, and a moment
chip sets the window to that moment, so "Explain" samples the frames of the moment being looked at."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr

from app.common import (
    AppContext,
    export_figures,
    export_section,
    progress_bridge,
    require_video,
    sentence,
    user_errors,
    whole,
    write_json,
)
from app.source import Source
from backends.figures.gradcam import gradcam_figure, save_pngs
from backends.views.gradcam import gradcam_view

SUMMARY_COLUMNS = ["frame", "time (s)", "cosine to query", "peak x", "peak y", "mean heat", "hot area"]
DEFAULT_QUERY = "a rabbit"


@dataclass
class GradCamTab:
    query: gr.Textbox
    start: gr.Number
    end: gr.Number
    note: gr.Markdown


def summary_rows(result) -> list[list]:
    return [[r["index"] + 1, r["time"], r["score"], r["peak_norm"][0], r["peak_norm"][1], r["mean"], r["hot_fraction"]]
            for r in result.summary()]


def window_note(start: float | None, end: float | None, query: str | None = None, origin: str | None = None) -> str:
    if end is None:
        if not start:
            return "Frames spread over the whole clip (set From/To, or click a moment chip, to look inside a moment)."
        return f"Frames spread over **{start:.1f} s to the end**."
    if end <= (start or 0):
        return f"**To ({end:g} s) must be later than From ({start or 0:g} s)**; empty To = the whole clip."
    origin = origin or (f"the top moment for “{query}”; a moment chip picks another" if query else None)
    return f"Frames spread over **{start or 0:.1f}-{end:.1f} s**" + (f" ({origin})." if origin else ".")


def follow_retrieval(state):
    """The retrieval tab's last result -> this tab's query and window (its top moment)."""
    if not state or not state.get("result") or not state["result"].moments:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    r = state["result"]
    top = r.moments[0]
    return r.query, round(top.start, 2), round(top.end, 2), window_note(top.start, top.end, r.query)


def follow_pick(picked: str):
    """A moment chip clicked on the retrieval tab ("start end n") -> this tab's window and its note."""
    try:
        start, end = (float(v) for v in str(picked).split()[:2])
    except ValueError:  # not what the chip writes: nothing to follow
        return gr.skip(), gr.skip(), gr.skip()
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        return gr.skip(), gr.skip(), gr.skip()
    return round(start, 2), round(end, 2), window_note(start, end, origin="the moment chip picked")


def build_gradcam_tab(ctx: AppContext, source: Source) -> GradCamTab:
    with gr.Row():
        query = gr.Textbox(label="Query", value=DEFAULT_QUERY, scale=4, max_lines=2, elem_id="ml-cam-query")
        method = gr.Dropdown(["gradcam", "gradcam++", "eigencam"], value="gradcam", label="Method",
                             info="EigenCAM is a cheap query-free preview")
        frames = gr.Slider(1, 16, value=8, step=1, label="Frames")
        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heat-map opacity")
        run = gr.Button("Explain", variant="primary", elem_id="ml-gradcam-btn")
    with gr.Row(equal_height=True):
        # no `minimum`: Gradio's own range message ("Value -5 is less than minimum value 0.") comes with a server
        # traceback per keystroke; the backend's window check words it for this video instead
        start = gr.Number(value=None, label="From (s)", elem_id="ml-cam-start", scale=1)
        end = gr.Number(value=None, label="To (s; empty = whole clip)", elem_id="ml-cam-end", scale=1)
        note = gr.Markdown(window_note(None, None), elem_classes=["ml-note"], elem_id="ml-cam-note")
    plot = gr.Plot(label="Grad-CAM overlays (slider: frame)", elem_id="ml-gradcam")
    table = gr.Dataframe(headers=SUMMARY_COLUMNS, label="Per-frame summary (x, y as fractions of the frame)",
                         interactive=False, column_count=len(SUMMARY_COLUMNS), elem_id="ml-gradcam-table")
    export, export_note, files = export_section("Export summary and figure")
    last = gr.State(None)

    @user_errors
    def run_gradcam(video, query_text: str, encoder: str = ctx.encoder, cam_method: str = "gradcam",
                    frame_count: float = 8, heat_opacity: float = 0.5, t0: float | None = None,
                    t1: float | None = None, request: gr.Request = None, progress=gr.Progress()):

        path = require_video(video)
        # what was typed goes to the backend as it is: a reversed or empty window is refused there in one sentence
        # (it used to become the whole clip without a word)
        window = {k: float(v) for k, v in (("start", t0), ("end", t1)) if v is not None}
        stop = ctx.stop_event(request)
        stop.clear()
        result, fig = gradcam_view(path, query_text, encoder=ctx.resolve_encoder(encoder), frames=whole(frame_count, "Frames"),
                                   method=cam_method, opacity=float(heat_opacity),
                                   progress=progress_bridge(progress, stop), **window)
        if result.extras.get("blank"):
            gr.Warning(sentence(result.extras["blank"] + "."))
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
        figs, note_text = export_figures({"gradcam": gradcam_figure(state["result"], state["opacity"])}, out)
        return [write_json(state["result"].to_dict(), out / "gradcam.json")] + figs + pngs, note_text

    source.heavy(run.click, run_gradcam, [source.video, query, source.encoder, method, frames, opacity, start, end],
                 [plot, table, last], api_name="gradcam", what="Grad-CAM")
    opacity.release(restyle, [last, opacity], [plot, last], api_name="gradcam_opacity")
    export.click(run_export, last, [files, export_note], api_name="gradcam_export")
    for box in (start, end):
        box.input(lambda a, b: window_note(a, b), [start, end], note, queue=False, api_name=False,
                   show_progress="hidden")
    source.clears((plot, None), (table, None), (last, None), (files, None), (export_note, ""), (start, None),
                  (end, None), (note, window_note(None, None)))
    return GradCamTab(query, start, end, note)
