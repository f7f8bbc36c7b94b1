"""The panel every tab reads: the video player (upload or sample clip), the encoder and the sampling rate,
with an Encode button (progress bar, Cancel) so that later queries on the clip are instant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from app.common import (
    FPS_CHOICES,
    GPU_QUEUE,
    AppContext,
    progress_bridge,
    require_video,
    user_errors,
)
from backends.core.paths import sample_clips
from backends.encoders import cached_encoder, registry
from backends.features import encode_video
from backends.io.playback import is_browser_playable, playable_path
from backends.io.video import probe

PLAYER_ID = "ml-player"  # the chips of the retrieval tab seek `#ml-player video`


def describe_encoder(name: str) -> str:
    """One line for the UI: id, device, dimensions (loads the model into the shared read-only cache).
    `name` is an offered, canonical encoder name (`AppContext.resolve_encoder`)."""
    enc = cached_encoder(name)
    d = enc.describe()
    spec = registry().get(name.split(":")[0] + ":" if ":" in name else name)
    what = f" — {spec.description}" if spec is not None else ""
    return (f"**{d['id']}** on `{d['device']}`, weights loaded; {d['dim']}-d joint space, "
            f"{d['input_size']} px input{what}")


@dataclass
class Source:
    """The shared input components (every event takes `video` first)."""

    video: gr.Video
    encoder: gr.Dropdown
    fps: gr.Dropdown
    status: gr.Markdown
    opened: gr.State  # videos opened in this session (for adapter training)
    encoder_info: gr.Markdown  # facts about the selected encoder (filled on page load by build_app)
    heavy_events: list = field(default_factory=list)  # events the Cancel button stops


def build_source(ctx: AppContext) -> tuple[Source, gr.Button, Callable[[gr.Request], str]]:
    """Player on the left; clip, encoder, encode/cancel on the right. Returns the Source, the Cancel button
    and its handler (build_app wires it to cancel every heavy event)."""
    samples = sample_clips()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            video = gr.Video(value=ctx.video, label="Video (upload any mp4, webm, avi, mov)", sources=["upload"],
                             elem_id=PLAYER_ID, format=None, height=360, interactive=True, autoplay=False,
                             buttons=["download"])
        with gr.Column(scale=2, min_width=320):
            sample = gr.Dropdown(list(samples), value=_sample_name(samples, ctx.video_source),
                                 label="Sample clip", info="real footage; or drop your own clip on the player")
            encoder = gr.Dropdown(ctx.encoder_choices(), value=ctx.encoder, label="Encoder",
                                  allow_custom_value=True,
                                  info="the registry's offline encoders and the checkpoints in the server's models "
                                  "folder ($MOMENTLENS_MODELS)")
            encoder_info = gr.Markdown(elem_classes=["ml-note"])
            fps = gr.Dropdown(list(FPS_CHOICES), value=1.0, label="Frames sampled per second")
            with gr.Row():
                encode_btn = gr.Button("Encode clip", variant="secondary")
                cancel_btn = gr.Button("Cancel", variant="stop")
            status = gr.Markdown(elem_classes=["ml-note"])
    opened = gr.State([])
    source = Source(video, encoder, fps, status, opened, encoder_info)

    @user_errors
    def pick_sample(name: str, opened_videos: list):
        if name not in samples:
            raise gr.Error(f"Unknown sample {name!r}; pick one from the list.")

        path = ctx.servable(playable_path(samples[name]))
        return path, f"Sample **{name}** loaded.", _remember(opened_videos, path)

    @user_errors
    def prepare_upload(video, opened_videos: list, request: gr.Request = None, progress=gr.Progress()):
        path = require_video(video)
        ctx.track_upload(request, path)
        info = probe(path)
        note = f"{Path(path).name}: {info.duration:.1f} s, {info.width}x{info.height}, {info.codec}"
        if not is_browser_playable(path):
            progress(0.0, desc="converting to H.264 for the browser")
            path = ctx.servable(playable_path(path))  # the converted copy lives in the cache: serve a copy
            note += " (converted to H.264 mp4 so the browser can play it)"
        return path, note + ".", _remember(opened_videos, path), None  # no sample is selected now

    @user_errors
    def encode(video, encoder_name: str, fps: float, request: gr.Request, progress=gr.Progress()):

        path = require_video(video)
        stop = ctx.stop_event(request)
        stop.clear()
        feats = encode_video(path, ctx.resolve_encoder(encoder_name), fps=float(fps), progress=progress_bridge(progress, stop),
                             should_stop=stop.is_set)
        how = "from the cache" if feats.from_cache else "encoded and cached"
        return f"{len(feats)} frames of {Path(path).name} ({feats.duration:.1f} s) {how}: queries are now instant."

    def request_stop(request: gr.Request):
        ctx.stop_event(request).set()
        return "Cancelling: the running computation stops at its next step."

    sample.input(pick_sample, [sample, opened], [video, status, opened], api_name="sample",
                 concurrency_id="video", concurrency_limit=2)
    video.upload(prepare_upload, [video, opened], [video, status, opened, sample], api_name="prepare",
                 concurrency_id="video", concurrency_limit=2)
    encoder.change(user_errors(lambda name: describe_encoder(ctx.resolve_encoder(name))), encoder, encoder_info,
                   api_name="encoder_info",
                   concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    enc_event = encode_btn.click(encode, [video, encoder, fps], status, api_name="encode",
                                 concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    source.heavy_events.append(enc_event)
    return source, cancel_btn, request_stop


def _remember(opened: list, path: str) -> list:
    return list(dict.fromkeys([*(opened or []), path]))[-16:]


def _sample_name(samples: dict[str, Path], path: str | Path | None) -> str | None:
    if path is None:
        return None
    for name, p in samples.items():
        if Path(p) == Path(path):
            return name
    return None
