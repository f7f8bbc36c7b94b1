"""Retrieval tab: a text query in, top-k moments out as a table and as chips that seek the player; the
saliency curve with the moments shaded, the 2D temporal map beside it, optional ground truth with IoU,
several queries on one timeline, and exports."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.common import (
    GPU_QUEUE,
    PLOT_HEIGHT,
    AppContext,
    export_figures,
    export_section,
    fit_width,
    progress_bridge,
    query_validator,
    require_text,
    require_video,
    seconds,
    upload_path,
    user_errors,
    whole,
    write_csv,
    write_json,
)
from app.source import Source, timeline_html
from backends.core.contracts import check_query, count
from backends.figures.retrieval import MOMENT_COLOURS, saliency_figure, temporal_map_figure, timeline_figure
from backends.retrieval.confidence import MOMENT_CONFIDENCE_MEANING
from backends.retrieval.engine import check_window, retrieve, retrieve_by_clip, retrieve_many
from backends.views.evaluation import evaluate_with_baseline

MOMENT_COLUMNS = ["rank", "start (s)", "end (s)", "length (s)", "score", "confidence", "IoU with ground truth"]
NUM_CLIP_OPTIONS = ["auto", "16", "32", "64", "128"]
EXAMPLE_QUERY = "a rabbit in a grassy meadow"

# Delegated click handler: a chip plays its moment on the shared player and stops at its end (PLAYER_JS in
# app.source); it also hands the moment to the Grad-CAM tab's window. Clicking the saliency curve seeks.
SEEK_JS = """
element.addEventListener('click', (event) => {
  const chip = event.target.closest('[data-start]');
  if (!chip) return;
  const start = parseFloat(chip.dataset.start), end = parseFloat(chip.dataset.end);
  window.mlPlayMoment && window.mlPlayMoment(start, end);
  element.querySelectorAll('.ml-chip').forEach((c) => c.classList.toggle('ml-chip-active', c === chip));
  // Grad-CAM looks at this moment next: through a box of this tab (the Grad-CAM tab's own boxes are not in the
  // page until it is first opened); a counter makes a second click on the same chip a change too
  const box = document.querySelector('#ml-picked textarea, #ml-picked input');
  if (box) {
    window.mlPicks = (window.mlPicks || 0) + 1;
    box.value = `${start.toFixed(3)} ${end.toFixed(3)} ${window.mlPicks}`;
    box.dispatchEvent(new Event('input', { bubbles: true }));
  }
});
setInterval(() => {
  const plot = document.querySelector('#ml-saliency .js-plotly-plot');
  if (!plot || plot.dataset.mlBound === '1' || typeof plot.on !== 'function') return;
  plot.dataset.mlBound = '1';
  plot.on('plotly_click', (data) => { const p = data.points && data.points[0]; if (p) window.mlSeek(p.x); });
}, 700);
"""
CHIP_CSS = """
.ml-chips { display: flex; flex-wrap: wrap; gap: 8px; padding: 4px 0; }
.ml-chip { border: 1px solid var(--border-color-primary); border-left: 6px solid var(--chip-colour);
  border-radius: 8px; padding: 6px 10px; background: var(--background-fill-secondary); cursor: pointer;
  font: inherit; font-size: 14px; color: var(--body-text-color); line-height: 1.25; text-align: left; }
.ml-chip:hover { background: var(--background-fill-primary); box-shadow: 0 1px 4px rgba(0,0,0,.15); }
.ml-chip-active { outline: 2px solid var(--chip-colour); }
.ml-chip b { font-size: 15px; }
.ml-chip small { color: var(--body-text-color-subdued); }
.ml-empty { color: var(--body-text-color-subdued); font-style: italic; padding: 6px 0; }
"""
# the chip picked last ("start end n"), carried to the Grad-CAM tab by the server: in the page, out of sight
PICKED_CSS = "#ml-picked { position: absolute !important; left: -10000px; width: 1px; height: 1px; overflow: hidden; }"


def _colours():

    return MOMENT_COLOURS


def moment_chips(moments, gt_ious=None, iou_label: str = "IoU", button: str = "Find moments") -> str:
    """HTML chips, one per moment: rank, time span, score; clicking one plays the moment on the player."""
    if not moments:
        return f'<div class="ml-empty">No moments yet: type a query and press {button}.</div>'
    colours = _colours()
    chips = []
    for rank, m in enumerate(moments, start=1):
        iou = "" if gt_ious is None else f" · {iou_label} {gt_ious[rank - 1]:.2f}"
        chips.append(
            f'<button class="ml-chip" data-start="{m.start:.3f}" data-end="{m.end:.3f}" data-rank="{rank}" '
            f'style="--chip-colour:{colours[(rank - 1) % len(colours)]}" '
            f'title="play {m.start:.2f}-{m.end:.2f} s (and look at it in Grad-CAM)">'
            f'<b>#{rank}</b> {seconds(m.start)} – {seconds(m.end)}<br>'
            f'<small>score {m.score:.3f}{iou}</small></button>')
    return '<div class="ml-chips">' + "".join(chips) + "</div>"


def moment_rows(result, gt=None) -> list[list]:
    """The backend's moment table as rows for gr.Dataframe (columns MOMENT_COLUMNS)."""
    return [list(row.values()) for row in result.table(gt)]


def _ground_truth(gt_start, gt_end, duration: float):
    """(start, end) when both are given, else None (empty or both 0 = none); outside the video -> the
    backend's one-sentence error."""
    if (gt_start is None and gt_end is None) or (not gt_start and not gt_end):
        return None
    if gt_start is None or gt_end is None:
        raise gr.Error("Give both ground-truth START and END in seconds, or leave both empty.")

    return check_window((gt_start, gt_end), duration, "the ground truth")


def _num_clips(value) -> int | None:
    return None if value in (None, "", "auto") else int(value)


def _default_annotations(offered: dict) -> str | None:
    return "realmix_dev.json" if "realmix_dev.json" in offered else next(iter(offered), None)


@dataclass
class RetrievalTab:
    """What build_app links to other parts of the page."""

    example: tuple  # (handler, inputs, outputs) of the example query, run when the page opens
    found: list  # the events that produce a new retrieval (their .success links Grad-CAM to it)
    last: gr.State  # this session's last retrieval: {"result", "gt", "ious", "figures"}
    picked: gr.Textbox  # the moment chip clicked last, "start end n" (SEEK_JS writes it; Grad-CAM follows it)


def _windows(value) -> str:
    """A window or list of windows ([s, e] or [[s, e], ...], as the evaluation report holds them) as '20.0-25.3 s'."""
    if not value:
        return ""
    windows = value if isinstance(value[0], (list, tuple)) else [value]
    return ", ".join(f"{float(w[0]):.1f}-{float(w[1]):.1f} s" for w in windows)


def build_retrieval_tab(ctx: AppContext, source: Source) -> RetrievalTab:
    """Build the tab (query row, summary, chips, then the saliency curve beside the 2D map)."""
    with gr.Row(equal_height=True):
        query = gr.Textbox(label="Query", value=EXAMPLE_QUERY, placeholder="describe the moment to find",
                           scale=5, max_lines=2, elem_id="ml-query")
        top_k = gr.Slider(1, 10, value=5, step=1, label="Top-k moments", scale=2)
        submit = gr.Button("Find moments", variant="primary", scale=1, min_width=140, elem_id="ml-submit")
    with gr.Accordion("... or query by clip: the moments most like a moment of this video (any encoder; video "
                      "encoders without a text side too)", open=False):
        with gr.Row(equal_height=True):
            clip_from = gr.Number(value=20.0, label="Clip from (s)", elem_id="ml-clip-from")
            clip_to = gr.Number(value=25.0, label="Clip to (s)", elem_id="ml-clip-to")
            clip_submit = gr.Button("Find similar moments", elem_id="ml-clip-submit")
    summary = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-summary")
    chips = gr.HTML(moment_chips([]), js_on_load=SEEK_JS, css_template=CHIP_CSS, elem_id="ml-chips")
    picked = gr.Textbox("", elem_id="ml-picked", show_label=False, container=False, max_lines=1, lines=1)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            saliency_plot = gr.Plot(label="Saliency: similarity of each sampled frame with the query (click: seek)",
                                    elem_id="ml-saliency")
        with gr.Column(scale=4):
            map_plot = gr.Plot(label="2D temporal map (hover: start, end, score)", elem_id="ml-map")
    table = gr.Dataframe(headers=MOMENT_COLUMNS, interactive=False,
                         label=f"Moments (ranked by score; confidence, 0 to 1: {MOMENT_CONFIDENCE_MEANING})",
                         elem_id="ml-moments", column_count=len(MOMENT_COLUMNS))
    with gr.Accordion("Options: NMS, ground truth", open=False):
        with gr.Row():
            nms = gr.Slider(0.1, 0.9, value=0.5, step=0.05, label="NMS IoU threshold")
            gt_start = gr.Number(value=None, label="Ground truth start (s; 0 and 0 = none)")
            gt_end = gr.Number(value=None, label="Ground truth end (s)")
    with gr.Accordion("2D map options", open=False):
        with gr.Row():
            num_clips = gr.Dropdown(NUM_CLIP_OPTIONS, value="auto", label="Map size N (clips)")
            mask = gr.Radio(["auto", "dense", "sparse"], value="auto", label="Valid cells (2D-TAN mask)")
            redraw = gr.Button("Redraw map")
        map_file = gr.File(label="Map as JSON ({num_clips, clip_times, scores})", interactive=False)
    with gr.Accordion("Compare several queries on one timeline", open=False):
        with gr.Row():
            queries = gr.Textbox(label="Queries, one per line", lines=3, scale=5,
                                 value="a rabbit in a grassy meadow\npeople riding bicycles\npedestrians walking")
            compare = gr.Button("Compare", scale=1)
        timeline_plot = gr.Plot(label="Queries on one timeline")
    export, export_note, export_files = export_section("Export moments and figures")
    with gr.Accordion("Trained grounding head (2D-TAN)", open=False):
        head = gr.File(label="Head checkpoint (.pt); empty = zero-shot scoring", file_types=[".pt", ".pth"])
    with gr.Accordion("Evaluate on an annotated dataset (with the blind prior baseline)", open=False):
        offered = ctx.offers.annotation_choices()
        gr.Markdown("Annotation files of the server's data folder, or your own (Charades-STA txt, QVHighlights "
                    "jsonl, ActivityNet json, simple JSON); the videos they name are looked up in the data folder.",
                    elem_classes=["ml-note"])
        with gr.Row():
            ann_choice = gr.Dropdown(list(offered), value=_default_annotations(offered), label="Annotations", scale=2)
            ann_upload = gr.File(label="... or upload an annotation file", file_types=[".txt", ".jsonl", ".json"],
                                 height=120, scale=2)
            train_choice = gr.Dropdown(["", *offered], value="", label="Train split for the prior baseline (optional)",
                                       scale=2)
            train_upload = gr.File(label="... or upload a train split", file_types=[".txt", ".jsonl", ".json"],
                                   height=120, scale=2)
        with gr.Row():
            durations = gr.Dropdown(list(ctx.offers.duration_choices()), value=[], multiselect=True,
                                    label="Charades_v1_*.csv durations (Charades-STA)", scale=3)
            protocol = gr.Radio(["momentlens", "charades-sta"], value="momentlens", label="Protocol")
            evaluate = gr.Button("Evaluate", scale=1)
        eval_summary = gr.Markdown(elem_classes=["ml-note"])
        eval_table = gr.Dataframe(label="Per query", interactive=False)
    last = gr.State(None)  # this session's last retrieval (for exports)

    @user_errors
    def run_retrieve(video, query_text: str, encoder: str = ctx.encoder, k: float = 5, nms_threshold: float = 0.5,
                     gt_s: float | None = None, gt_e: float | None = None, fps: float = 1.0,
                     head_file: str | None = None, request: gr.Request = None, progress=gr.Progress()):
        path = require_video(video)
        require_text(query_text)
        stop = ctx.stop_event(request)
        stop.clear()
        t0 = time.perf_counter()
        result = retrieve(path, query_text, encoder=ctx.resolve_encoder(encoder), head=head_file or None, top_k=whole(k, "Top-k"),
                          nms_threshold=float(nms_threshold), fps=float(fps or 1.0),
                          progress=progress_bridge(progress, stop))
        return present(result, path, time.perf_counter() - t0, gt_s, gt_e)

    @user_errors
    def run_retrieve_clip(video, start_s: float | None, end_s: float | None, encoder: str = ctx.encoder, k: float = 5,
                          nms_threshold: float = 0.5, gt_s: float | None = None, gt_e: float | None = None,
                          fps: float = 1.0, request: gr.Request = None, progress=gr.Progress()):
        path = require_video(video)
        if start_s is None or end_s is None:
            raise gr.Error("Give the query clip's start and end in seconds (Clip from, Clip to).")
        stop = ctx.stop_event(request)
        stop.clear()
        t0 = time.perf_counter()
        result = retrieve_by_clip(path, moment=(float(start_s), float(end_s)), encoder=ctx.resolve_encoder(encoder),
                                  top_k=whole(k, "Top-k"), nms_threshold=float(nms_threshold), fps=float(fps or 1.0),
                                  progress=progress_bridge(progress, stop))
        return present(result, path, time.perf_counter() - t0, gt_s, gt_e)

    def present(result, path, elapsed: float, gt_s, gt_e):
        """What both searches show: summary, chips, table, saliency curve, 2D map, timeline, export state."""
        gt = _ground_truth(gt_s, gt_e, result.duration)
        ious = result.ious(gt)
        sal = fit_width(saliency_figure(result, top=min(3, len(result.moments))), PLOT_HEIGHT)
        if gt is not None:
            sal.add_vrect(x0=gt[0], x1=gt[1], line=dict(color="#2ca02c", width=2, dash="dash"), fillcolor="rgba(0,0,0,0)",
                          annotation_text="ground truth", annotation_position="bottom left")
        query_moment = result.extra.get("query_clip", {}).get("moment")
        if query_moment:
            sal.add_vrect(x0=query_moment[0], x1=query_moment[1], line=dict(color="#555", width=2, dash="dot"),
                          fillcolor="rgba(120,120,120,0.15)", annotation_text="query clip",
                          annotation_position="top left")
        tmap = fit_width(temporal_map_figure(result.map, result.moments, gt,
                                             title=f"2D temporal map, N = {result.map.num_clips}"), 560)
        text = (f"**{count(len(result.moments), 'moment')}** for “{html.escape(result.query)}” in {Path(path).name} "
                f"({result.duration:.1f} s) · encoder `{result.encoder}` · scorer `{result.scorer}` · {elapsed * 1000:.0f} ms")
        if "query_clip" in result.extra:
            text += " · moments overlapping the query clip are left out"
        if ious is not None:
            text += f" · best IoU with the ground truth {float(ious.max()):.2f} (top-1 {float(ious[0]):.2f})"
        if result.verdict():
            text += f"\n\n{'✔' if result.distinct else '⚠'} {result.verdict()}"
        state = {"result": result, "gt": gt, "ious": ious, "figures": {"saliency": sal, "map2d": tmap}}
        return (text, moment_chips(result.moments, ious), moment_rows(result, gt), sal, tmap,
                timeline_html(result.duration, result.moments, _colours()), state)

    @user_errors
    def run_map2d(video, query_text: str, encoder: str = ctx.encoder, n: str = "auto", mask_kind: str = "auto",
                  k: float = 5, gt_s: float | None = None, gt_e: float | None = None, fps: float = 1.0,
                  request: gr.Request = None, progress=gr.Progress()):

        path = require_video(video)
        require_text(query_text)
        stop = ctx.stop_event(request)
        stop.clear()
        result = retrieve(path, query_text, encoder=ctx.resolve_encoder(encoder), top_k=whole(k, "Top-k"), fps=float(fps or 1.0),
                          num_clips=_num_clips(n), mask=mask_kind or "auto", progress=progress_bridge(progress, stop))
        gt = _ground_truth(gt_s, gt_e, result.duration)
        fig = fit_width(temporal_map_figure(result.map, result.moments, gt,
                                            title=f"2D temporal map, N = {result.map.num_clips}, mask {mask_kind}"
                                                  "<br><sup>#1, #2, ... ranked on this map (the chips and table keep "
                                                  "the ranking of Find moments)</sup>"), 560)
        out = ctx.session_dir(request, "map2d")
        doc = {"video": Path(path).name, "query": result.query, "encoder": result.encoder, **result.map.to_dict()}
        return fig, write_json(doc, out / "map2d.json")

    @user_errors
    def run_compare(video, lines: str, encoder: str = ctx.encoder, fps: float = 1.0,
                    request: gr.Request = None, progress=gr.Progress()):

        path = require_video(video)
        # each line checked as a query (a line of invisible characters is no query); the same query twice would draw
        # one curve over the other under two labels: each once
        texts = list(dict.fromkeys(q for q in (check_query(t, required=False) for t in (lines or "").splitlines()) if q))
        if not texts:
            raise gr.Error("Type at least one query, one per line.")
        if len(texts) > 8:
            raise gr.Error(f"{len(texts)} queries given; compare at most 8 at once so the timeline stays readable.")
        stop = ctx.stop_event(request)
        stop.clear()
        results = retrieve_many(path, texts, encoder=ctx.resolve_encoder(encoder), top_k=1, fps=float(fps or 1.0),
                                progress=progress_bridge(progress, stop))
        return fit_width(timeline_figure(results, top=1, title="queries on one timeline (top moment of each shaded)"),
                         PLOT_HEIGHT + 40)

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: find moments first.")
        result = state["result"]
        out = ctx.session_dir(request, "retrieval")
        doc = result.to_dict()
        doc["scorer"] = result.scorer
        if state["gt"] is not None:
            doc["ground_truth"] = list(state["gt"])
            doc["iou"] = [round(float(v), 4) for v in state["ious"]]
        rows = [dict(zip(MOMENT_COLUMNS, r)) for r in moment_rows(result, state["gt"])]
        files = [write_json(doc, out / "moments.json"), write_csv(rows, out / "moments.csv"),
                 write_json({"query": result.query, **result.map.to_dict()}, out / "map2d.json")]
        figs, note = export_figures(state["figures"], out)
        return files + figs, note

    @user_errors
    def run_evaluate(annotations: str | None = None, uploaded=None, encoder: str = ctx.encoder, train: str = "",
                     train_uploaded=None, csvs: list[str] | None = None, protocol_name: str = "momentlens",
                     progress=gr.Progress()):
        if protocol_name not in ("momentlens", "charades-sta"):
            raise gr.Error("Pick the protocol momentlens or charades-sta.")
        test_file = ctx.offers.resolve_annotation(annotations, upload_path(uploaded))
        train_file = (ctx.offers.resolve_annotation(train, upload_path(train_uploaded))
                      if (train or train_uploaded) else None)
        model = ctx.resolve_encoder(encoder)
        report = evaluate_with_baseline(
            test_file, video_dir=ctx.offers.video_folder(), encoder=model,
            protocol=protocol_name, train=train_file, durations=ctx.offers.resolve_durations(csvs),
            progress=progress_bridge(progress, None), confine=True)
        keys = [k for k in report["model"]]
        lines = [f"**{report['num_queries']} queries** · protocol: {report['protocol']}", "",
                 "| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
                 f"| {html.escape(str(getattr(model, 'id', model)))} (zero-shot) | "
                 + " | ".join(f"{100 * report['model'][k]:.2f}" for k in keys) + " |"]
        if report["prior"] is not None:
            p = report["prior"]
            lines.append(f"| prior baseline (blind, seed {p['seed']}, {p['runs']} runs) | "
                         + " | ".join(f"{100 * p[k]:.2f}" for k in keys) + " |")
        else:
            lines.append("")
            lines.append("_No train split given: the blind prior baseline needs one to fit its moment prior._")
        rows = [[r["query"], _windows(r["gt"]), _windows(r["top1"]), round(r["iou_top1"], 3)]
                for r in report["per_query"]]
        return "\n".join(lines), {"headers": ["query", "ground truth", "top-1", "IoU"], "data": rows}

    evaluate.click(run_evaluate, [ann_choice, ann_upload, source.encoder, train_choice, train_upload, durations, protocol],
                   [eval_summary, eval_table], api_name="evaluate", concurrency_id=GPU_QUEUE,
                   concurrency_limit=ctx.gpu_concurrency)

    inputs = [source.video, query, source.encoder, top_k, nms, gt_start, gt_end, source.fps, head]
    outputs = [summary, chips, table, saliency_plot, map_plot, source.timeline, last]
    found = source.heavy([submit.click, query.submit], run_retrieve, inputs, outputs, api_name="retrieve",
                         validator=query_validator(), what="the search")
    source.heavy(clip_submit.click, run_retrieve_clip, [source.video, clip_from, clip_to, source.encoder, top_k, nms,
                                                        gt_start, gt_end, source.fps], outputs, api_name="retrieve_clip",
                 what="the search")
    source.heavy(redraw.click, run_map2d, [source.video, query, source.encoder, num_clips, mask, top_k, gt_start, gt_end,
                                           source.fps], [map_plot, map_file], api_name="map2d",
                 validator=query_validator(), what="the 2D map")
    source.heavy(compare.click, run_compare, [source.video, queries, source.encoder, source.fps], timeline_plot,
                 api_name="compare", what="the comparison of queries")
    export.click(run_export, last, [export_files, export_note], api_name="retrieve_export")
    source.clears((summary, ""), (chips, moment_chips([])), (table, None), (saliency_plot, None), (map_plot, None),
                  (last, None), (map_file, None), (timeline_plot, None), (export_files, None), (export_note, ""))
    return RetrievalTab((run_retrieve, inputs, outputs), found, last, picked)
