"""Temporal-scaling tab (LiteVL): per-layer scale parameters read by name from checkpoints, and training a
temporal adapter on the clips opened in this session."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app.common import (
    GPU_QUEUE,
    AppContext,
    export_figures,
    export_section,
    progress_bridge,
    require_video,
    user_errors,
    whole,
    write_json,
)
from app.source import Source
from backends.analysis.scaling import SCALE_NAME_CHOICES
from backends.encoders import cached_encoder
from backends.models.adapter import AdapterConfig, TemporalAdapter
from backends.train.adapter import (
    adapter_training_videos,
    loss_curve_paths,
    train_adapter_on_videos,
)
from backends.views.scaling import scaling_view

DEFAULT_NAMES = next(iter(SCALE_NAME_CHOICES))  # temporal_scale, scale, alpha or gamma


def _paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else f.get("path") for f in files if f]


def build_scaling_tab(ctx: AppContext, source: Source) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            checkpoint = gr.File(label="Checkpoint (.pt): ours or any state dict with layer-indexed scales",
                                 file_types=[".pt", ".pth", ".bin", ".ckpt"], elem_id="ml-ckpt", height=130)
            others = gr.File(label="More checkpoints to overlay (optional)", file_count="multiple",
                             file_types=[".pt", ".pth", ".bin", ".ckpt"], height=130)
            pattern = gr.Dropdown(list(SCALE_NAME_CHOICES), value=DEFAULT_NAMES, label="Parameter names",
                                  info="the last name component of the scales (any layer-indexed key)")
            show = gr.Button("Show scales", variant="primary", elem_id="ml-scaling-btn")
        with gr.Column(scale=2):
            gr.Markdown("**Train a temporal adapter** on the clips opened in this session (plus the package-shipped "
                        "clips, so there are at least two videos); self-supervised, CVRL-style InfoNCE.")
            epochs = gr.Slider(1, 30, value=5, step=1, label="Epochs")
            train = gr.Button("Train adapter")
            loss_png = gr.Image(label="Loss per epoch", interactive=False, height=220)
            trained = gr.File(label="Trained checkpoint", interactive=False, height=80)
    summary = gr.Markdown(elem_classes=["ml-note"])
    plot = gr.Plot(label="Per-layer temporal scales", elem_id="ml-scaling")
    export, export_note, files = export_section("Export scales and figure")
    last = gr.State(None)

    @user_errors
    def run_scaling(ckpt=None, more=None, names: str = DEFAULT_NAMES, encoder: str = ctx.encoder):
        if (names or DEFAULT_NAMES) not in SCALE_NAME_CHOICES:
            raise gr.Error(f"Pick the parameter names from the list ({', '.join(SCALE_NAME_CHOICES)}).")
        sources = _paths(ckpt) + _paths(more)
        note = ""
        if not sources:
            # nothing uploaded yet: show the untrained adapter of the selected encoder (every scale starts at 0)
            sources = [TemporalAdapter(AdapterConfig(dim=cached_encoder(ctx.resolve_encoder(encoder)).dim))]
            note = ("No checkpoint yet: this is an untrained adapter, whose scales all start at 0. "
                    "Upload a checkpoint or train one on the right.")
        data, fig = scaling_view(sources, SCALE_NAME_CHOICES[names or DEFAULT_NAMES])
        groups = data["checkpoints"]
        text = " · ".join(f"**{Path(g['checkpoint']).name}**: {len(g['layers'])} scale parameters" for g in groups)
        return fig, (note + " " + text).strip(), data, {"data": data, "figure": fig}

    @user_errors
    def run_train(video, opened: list, encoder: str = ctx.encoder, epoch_count: float = 5, fps: float = 1.0,
                  request: gr.Request = None, progress=gr.Progress()):

        videos = adapter_training_videos(require_video(video), *(opened or []))
        stop = ctx.stop_event(request)
        stop.clear()
        out = ctx.session_dir(request, "adapter") / "adapter.pt"
        ckpt = train_adapter_on_videos(videos, out, encoder=ctx.resolve_encoder(encoder), epochs=whole(epoch_count, "Epochs"),
                                       fps=float(fps or 1.0), progress=progress_bridge(progress, stop),
                                       should_stop=stop.is_set)
        fig, text, _, state = run_scaling(str(ckpt), None, DEFAULT_NAMES, encoder)
        # the new adapter is offered in the encoder list from now on (it lives in the app's own work folder)
        adapters = ctx.remember_adapter(request, f"adapter:{Path(ckpt).resolve()}")
        choices = gr.update(choices=ctx.encoder_choices(ctx.resolve_encoder(encoder), extra=adapters))
        return (str(ckpt), str(loss_curve_paths(ckpt)[1]), fig,
                f"Trained on {len(videos)} clips; the adapter is now in the encoder list. " + text, state, choices)

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: show the scales of a checkpoint first.")
        out = ctx.session_dir(request, "scaling")
        figs, note = export_figures({"scaling": state["figure"]}, out)
        return [write_json(state["data"], out / "scales.json")] + figs, note

    data_json = gr.JSON(visible=False)
    heavy = dict(concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    show.click(run_scaling, [checkpoint, others, pattern, source.encoder], [plot, summary, data_json, last],
               api_name="scaling", **heavy)
    source.heavy(train.click, run_train, [source.video, source.opened, source.encoder, epochs, source.fps],
                 [trained, loss_png, plot, summary, last, source.encoder], api_name="train_adapter",
                 what="the adapter training", progress_on=loss_png, per_clip=False)  # outlives the clip
    export.click(run_export, last, [files, export_note], api_name="scaling_export")
