"""Compare-encoders tab: two encoders on the same clip and query, side by side. Both saliency curves on one
axis, each encoder's 2D map and top-k moments in its own column, and their agreement (IoU of the top moments,
how many moments of A the other finds, saliency correlation): "which encoder sees this moment?"."""

from __future__ import annotations

import html

import gradio as gr

from app.common import (
    PLOT_HEIGHT,
    AppContext,
    export_figures,
    export_section,
    fit_width,
    progress_bridge,
    query_validator,
    require_text,
    require_video,
    user_errors,
    whole,
    write_json,
)
from app.retrieval_tab import CHIP_CSS, EXAMPLE_QUERY, SEEK_JS, moment_chips
from app.source import Source
from backends.figures.compare import ENCODER_COLOURS
from backends.views.compare import MATCH_IOU, compare_view


def column_header(letter: str, name: str | None, colour: str) -> str:
    if not name:
        return f"### {letter}"
    return f'### <span style="color:{colour}">■</span> {letter}: `{html.escape(name)}`'


def _second_choice(ctx: AppContext) -> str | None:
    """Encoder B's default: the first offered encoder that is not A (None when only one is offered)."""
    return next((value for _label, value in ctx.encoder_choices() if value != ctx.encoder), None)


def build_compare_tab(ctx: AppContext, source: Source) -> None:
    no_chips = moment_chips([], button="Compare encoders")
    with gr.Row(equal_height=True):
        query = gr.Textbox(label="Query", value=EXAMPLE_QUERY, scale=4, max_lines=2, elem_id="ml-compare-query")
        enc_a = gr.Dropdown(ctx.encoder_choices(), value=ctx.encoder, label="Encoder A", scale=2,
                            elem_id="ml-compare-a")
        enc_b = gr.Dropdown(ctx.encoder_choices(), value=_second_choice(ctx), label="Encoder B", scale=2,
                            elem_id="ml-compare-b",
                            info="e.g. an adapter trained in Temporal scaling")
        top_k = gr.Slider(1, 10, value=5, step=1, label="Top-k", scale=1)
        run = gr.Button("Compare encoders", variant="primary", scale=1, min_width=140, elem_id="ml-compare-btn")
    summary = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-compare-summary")
    saliency = gr.Plot(label="Both saliency curves (each rescaled to [0, 1]; hover: raw cosine)",
                       elem_id="ml-compare-saliency")
    with gr.Row(equal_height=False):
        with gr.Column(elem_id="ml-compare-col-a"):
            head_a = gr.Markdown(column_header("A", None, ENCODER_COLOURS[0]))
            chips_a = gr.HTML(no_chips, js_on_load=SEEK_JS, css_template=CHIP_CSS, elem_id="ml-compare-chips-a")
            map_a = gr.Plot(label="A: 2D temporal map", elem_id="ml-compare-map-a")
        with gr.Column(elem_id="ml-compare-col-b"):
            head_b = gr.Markdown(column_header("B", None, ENCODER_COLOURS[1]))
            chips_b = gr.HTML(no_chips, js_on_load=SEEK_JS, css_template=CHIP_CSS, elem_id="ml-compare-chips-b")
            map_b = gr.Plot(label="B: 2D temporal map", elem_id="ml-compare-map-b")
    export, export_note, files = export_section("Export comparison and figures")
    last = gr.State(None)

    @user_errors
    def run_compare(video, query_text: str, a: str | None = None, b: str | None = None, k: float = 5,
                    fps: float = 1.0, request: gr.Request = None, progress=gr.Progress()):
        path = require_video(video)
        require_text(query_text)
        if not a or not b:
            more = " add a checkpoint or fetch published weights under “More encoders” by the clip," if ctx.local else ""
            raise gr.Error(f"Pick two encoders, A and B. Only one offered? Train an adapter in the Temporal scaling "
                           f"tab,{more} or put a checkpoint in the models folder.")
        names = ctx.resolve_encoder(a), ctx.resolve_encoder(b)  # canonical: the backend sees one model twice
        stop = ctx.stop_event(request)
        stop.clear()
        cmp, figs = compare_view(path, query_text, names, top_k=whole(k, "Top-k"), fps=float(fps or 1.0),
                                 progress=progress_bridge(progress, stop), should_stop=stop.is_set)
        text = (f"**Agreement** on “{html.escape(cmp.a.query)}” ({cmp.a.duration:.1f} s): {cmp.summary()}. "
                f"A moment is *found by the other* when one of its moments overlaps it at IoU ≥ {MATCH_IOU}.")
        ious_a = [float(v) for v in cmp.best_iou_a]
        ious_b = [float(v) for v in cmp.best_iou_b]
        sal = fit_width(figs["saliency"], PLOT_HEIGHT - 60)
        ma, mb = fit_width(figs["map_a"], 520), fit_width(figs["map_b"], 520)
        state = {"comparison": cmp, "figures": {"saliency": sal, "map_a": ma, "map_b": mb}}
        return (text, sal, column_header("A", cmp.a.encoder, ENCODER_COLOURS[0]),
                moment_chips(cmp.a.moments, ious_a, "best IoU with B"), ma,
                column_header("B", cmp.b.encoder, ENCODER_COLOURS[1]),
                moment_chips(cmp.b.moments, ious_b, "best IoU with A"), mb, state)

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: compare two encoders first.")
        out = ctx.session_dir(request, "compare")
        figs, note = export_figures(state["figures"], out)
        return [write_json(state["comparison"].to_dict(), out / "comparison.json")] + figs, note

    def refresh(current: str | None, request: gr.Request):
        """Offer what the server offers now, plus the adapters this session trained since the page opened."""
        return gr.update(choices=ctx.session_encoder_choices(request, ctx.encoder), value=current)

    outputs = [summary, saliency, head_a, chips_a, map_a, head_b, chips_b, map_b, last]
    source.heavy([run.click, query.submit], run_compare, [source.video, query, enc_a, enc_b, top_k, source.fps],
                 outputs, api_name="compare_encoders", validator=query_validator(),
                 what="the comparison of encoders")
    export.click(run_export, last, [files, export_note], api_name="compare_export")
    for dd in (enc_a, enc_b):
        dd.focus(refresh, dd, dd, queue=False, api_name=False, show_progress="hidden")
    source.clears((summary, ""), (saliency, None), (chips_a, no_chips), (chips_b, no_chips),
                  (map_a, None), (map_b, None), (last, None), (files, None), (export_note, ""))
