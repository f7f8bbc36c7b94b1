"""Augmentations tab: CVRL's two views side by side with their sampled parameters and the temporal-gap
histogram; FAME, temporal gradient and optical flow."""

from __future__ import annotations

import gradio as gr

from app.common import (
    AppContext,
    export_figures,
    export_section,
    require_video,
    user_errors,
    write_json,
)
from app.source import Source
from backends.analysis.cvrl import AUGMENTATIONS, CvrlConfig
from backends.views.augment import augment_view

AUGMENTATION_NAMES = ["crop", "flip", "jitter", "gray", "blur", "solarize"]


def build_augment_tab(ctx: AppContext, source: Source) -> None:
    with gr.Row():
        method = gr.Dropdown(["cvrl", "fame", "tgrad", "flow", "all"], value="cvrl", label="Method",
                             info="CVRL views, FAME merging, temporal gradient, Farneback flow")
        seed = gr.Number(value=0, precision=0, label="Seed")
        strength = gr.Slider(0.0, 2.0, value=1.0, step=0.1, label="Colour jitter strength s")
        start = gr.Number(value=0.0, label="Start (s)")
    with gr.Row():
        enabled = gr.CheckboxGroup(AUGMENTATION_NAMES, value=AUGMENTATION_NAMES, label="Augmentations allowed")
        inconsistent = gr.Checkbox(value=False, label="Inconsistent: a new draw per frame (shows why CVRL keeps it fixed)")
        as_trained = gr.Checkbox(value=True, label="As the encoder was trained (a video: checkpoint's saved CVRL settings)")
        run = gr.Button("Sample views", variant="primary", elem_id="ml-augment-btn")
    plot = gr.Plot(label="Two augmented views", elem_id="ml-augment")
    with gr.Accordion("Sampled parameters (JSON)", open=False):
        params = gr.JSON(label="parameters")
    export, export_note, files = export_section("Export parameters and figure")
    last = gr.State(None)

    @user_errors
    def run_augment(video, method_name: str = "cvrl", seed_value: float = 0, jitter_strength: float = 1.0,
                    start_s: float = 0.0, allowed: list[str] | None = None, per_frame: bool = False,
                    encoder: str = ctx.encoder, use_training: bool = True):

        path = require_video(video)
        allowed = AUGMENTATIONS if allowed is None else allowed
        trained_by = ctx.resolve_encoder(encoder) if use_training else None
        result, fig = augment_view(path, method_name, int(seed_value or 0), config=CvrlConfig(strength=float(jitter_strength)),
                                   enabled=allowed, inconsistent=bool(per_frame), start=float(start_s or 0.0),
                                   encoder=trained_by)
        doc = result.to_dict()
        return fig, doc, {"doc": doc, "figure": fig}

    @user_errors
    def run_export(state, request: gr.Request = None):
        if not state:
            raise gr.Error("Nothing to export yet: sample views first.")
        out = ctx.session_dir(request, "augment")
        figs, note = export_figures({"augment": state["figure"]}, out)
        return [write_json(state["doc"], out / "augment_params.json")] + figs, note

    source.heavy(run.click, run_augment, [source.video, method, seed, strength, start, enabled, inconsistent,
                                          source.encoder, as_trained], [plot, params, last], api_name="augment", what="the augmentation")
    export.click(run_export, last, [files, export_note], api_name="augment_export")
    source.clears((plot, None), (params, None), (last, None), (files, None), (export_note, ""))
