"""The panel every tab reads: the video player (upload or sample clip), the encoder and the sampling rate,
with an Encode button (progress bar, Cancel) so that later queries on the clip are instant.

The player is shared by the tabs: a moment chip plays its moment and stops at its end, a click on a saliency
curve or a self-similarity cell seeks it, and the timeline under it marks the current moments (PLAYER_JS).
Loading another clip clears every output computed on the previous one (`Source.clears`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from app.common import (
    FPS_CHOICES,
    GPU_QUEUE,
    AppContext,
    number_dropdown,
    progress_bridge,
    require_video,
    sentence,
    upload_path,
    user_errors,
)
from backends.core.errors import MomentLensError
from backends.core.paths import sample_clips
from backends.encoders import cached_encoder, default_encoder_name, registry
from backends.encoders.weights import downloadable, get_weights
from backends.features import encode_video
from backends.io.download import DownloadError
from backends.io.playback import is_browser_playable, playable_path
from backends.io.video import probe

log = logging.getLogger(__name__)

PLAYER_ID = "ml-player"  # the chips of the retrieval tab seek `#ml-player video`
TIMELINE_ID = "ml-timeline"

# The page's one player controller, on `window` so that chips, plots and the timeline share it:
# mlPlayMoment(start, end) seeks, plays and pauses at `end` (loops when the Loop box is ticked);
# mlSeek(t) seeks and plays on. A 100 ms poll moves the timeline's playhead and enforces the end
# (the <video> element is replaced whenever Gradio loads another clip, so nothing is bound to it).
PLAYER_JS = f"""
const player = () => document.querySelector('#{PLAYER_ID} video');
window.mlMoment = null;
window.mlPlayMoment = (start, end) => {{
  const v = player();
  if (!v) return;
  window.mlMoment = (end === null || end === undefined) ? null : {{ start: Number(start), end: Number(end) }};
  v.currentTime = Number(start);
  v.play().catch(() => {{}});
}};
window.mlSeek = (t) => window.mlPlayMoment(t, null);
// put a number into a gr.Number (by elem_id) as if typed, so its events fire (chips -> Grad-CAM, TSM cells)
window.mlSetNumber = (id, v) => {{
  const input = document.querySelector(`#${{id}} input`);
  if (!input) return;
  input.value = Number(v).toFixed(2);
  input.dispatchEvent(new Event('input', {{ bubbles: true }}));
  input.dispatchEvent(new Event('change', {{ bubbles: true }}));
}};
element.addEventListener('click', (event) => {{
  const seg = event.target.closest('[data-start]');
  if (!seg) return;
  window.mlPlayMoment(parseFloat(seg.dataset.start), seg.dataset.end ? parseFloat(seg.dataset.end) : null);
}});
setInterval(() => {{
  const v = player();
  const bar = element.querySelector('.ml-tl');
  const m = window.mlMoment;
  if (v && m && !v.paused && v.currentTime >= m.end) {{
    if (document.querySelector('#ml-loop input')?.checked) v.currentTime = m.start; else {{ v.pause(); v.currentTime = m.end; }}
  }}
  if (!bar) return;
  const d = parseFloat(bar.dataset.duration) || (v && v.duration) || 0;
  const head = bar.querySelector('.ml-tl-head');
  if (head && v && d > 0) head.style.left = (100 * Math.min(1, v.currentTime / d)) + '%';
  const sel = bar.querySelector('.ml-tl-sel');
  if (sel) {{
    sel.style.display = m ? 'block' : 'none';
    if (m && d > 0) {{ sel.style.left = (100 * m.start / d) + '%'; sel.style.width = (100 * (m.end - m.start) / d) + '%'; }}
  }}
}}, 100);
"""
TIMELINE_CSS = """
.ml-tl { position: relative; height: var(--tl-height, 16px); margin: 2px 0 0 0; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); border-radius: 6px; overflow: hidden; }
.ml-tl-seg { position: absolute; height: 9px; border-radius: 3px; opacity: .6; cursor: pointer;
  background: var(--seg-colour); color: white; font-size: 8px; line-height: 9px; padding-left: 2px;
  white-space: nowrap; overflow: hidden; }
.ml-tl-seg:hover { opacity: .9; }
.ml-tl-sel { position: absolute; top: 0; bottom: 0; border: 2px solid var(--body-text-color); border-radius: 4px;
  pointer-events: none; display: none; }
.ml-tl-head { position: absolute; top: 0; bottom: 0; width: 2px; background: var(--color-accent); pointer-events: none; }
.ml-tl-empty { color: var(--body-text-color-subdued); font-size: 12px; padding: 4px 8px; }
"""


def describe_encoder(name: str) -> str:
    """One line for the UI: id, device, dimensions (loads the model into the shared read-only cache).
    `name` is an offered, canonical encoder name (`AppContext.resolve_encoder`)."""
    enc = cached_encoder(name)
    d = enc.describe()
    spec = registry().get(name.split(":")[0] + ":" if ":" in name else name)
    what = f" — {spec.description}" if spec is not None else ""
    if enc.clip_len > 1:  # a video encoder: say what it sees, and how to query one without a text side
        what = (f" · clips of {enc.clip_len} frames at {enc.frame_rate:g} fps — 3D CNN video encoder"
                + ("" if enc.has_text else "; no text side: find moments with “query by clip”"))
    return f"**{d['id']}** on `{d['device']}` · {d['dim']}-d · {d['input_size']} px{what}."


def timeline_html(duration: float | None = None, moments=(), colours: tuple[str, ...] = ("#d62728",)) -> str:
    """The strip under the player: the clip's length, one lane per moment with its segment (a click plays it),
    the playhead and the moment playing (outlined)."""
    if not duration or duration <= 0:
        return '<div class="ml-tl-empty">Moments found in the clip appear here; click one to play it.</div>'
    segs = []
    for rank, m in enumerate(moments, start=1):
        left, width = 100 * m.start / duration, max(0.4, 100 * (m.end - m.start) / duration)
        segs.append(f'<div class="ml-tl-seg" data-start="{m.start:.3f}" data-end="{m.end:.3f}" '
                    f'style="left:{left:.3f}%;width:{width:.3f}%;top:{2 + 11 * (rank - 1)}px;'
                    f'--seg-colour:{colours[(rank - 1) % len(colours)]}" '
                    f'title="#{rank}: {m.start:.1f}-{m.end:.1f} s, click to play">#{rank}</div>')
    height = 4 + 11 * max(1, len(segs))  # one lane per moment, so overlapping moments stay visible
    return (f'<div class="ml-tl" data-duration="{duration:.3f}" style="--tl-height:{height}px">' + "".join(segs)
            + '<div class="ml-tl-sel"></div><div class="ml-tl-head"></div></div>')


@dataclass
class Source:
    """The shared input components (every event takes `video` first)."""

    video: gr.Video
    encoder: gr.Dropdown
    fps: gr.Dropdown
    status: gr.Markdown
    opened: gr.State  # videos opened in this session (for adapter training)
    encoder_info: gr.Markdown  # facts about the selected encoder (filled on page load by build_app)
    timeline: gr.HTML  # moments of the last retrieval under the player
    sample: gr.Dropdown | None = None  # the sample clip menu (blank once a clip from elsewhere is loaded)
    heavy_events: list = field(default_factory=list)  # events the Cancel button stops
    clip_events: list = field(default_factory=list)  # those computed on the clip: another clip cancels them
    fps_events: list = field(default_factory=list)  # those that sample the clip at `fps`: another rate cancels them
    resets: list = field(default_factory=list)  # (component, value) pairs restored when another clip is loaded
    gpu_concurrency: int = 1
    tracked: Callable[[str], Callable[[Callable], Callable]] | None = None  # AppContext.tracked

    def heavy(self, listeners, fn: Callable, inputs, outputs, api_name: str | bool | None,
              validator: Callable | None = None, what: str = "the computation", progress_on=None,
              per_clip: bool = True):
        """Register a model-heavy handler on one or more triggers (`button.click`, `box.submit`): it runs in
        the shared GPU queue, the Cancel button stops it (and names `what`, "the search", as stopped), and
        starting it clears the previous "Cancelled". The first trigger gets `api_name`, the others none;
        `validator` (common.query_validator) checks the inputs first. The progress bar shows on `progress_on`
        (default: the first output, the tab's main result), not once over every output. Returns the events, one
        per trigger. `per_clip=False`: its result outlives the clip (a trained adapter), so another clip or frame
        rate does not cancel it (the Cancel button still does)."""
        listeners = listeners if isinstance(listeners, (list, tuple)) else [listeners]
        if progress_on is None:
            progress_on = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        fn = self.tracked(what)(fn) if self.tracked else fn
        events = []
        for i, listen in enumerate(listeners):
            # registered first: the page runs a trigger's listeners in order and waits for a queued one (with a
            # validator) to be answered, so a clear registered after it came only when it ended, wiping "Cancelled"
            listen(_clear_status, None, self.status, queue=False, api_name=False, show_progress="hidden")
            ev = listen(fn, inputs, outputs, api_name=api_name if i == 0 else False, concurrency_id=GPU_QUEUE,
                        concurrency_limit=self.gpu_concurrency, validator=validator, show_progress_on=progress_on)
            self.heavy_events.append(ev)
            if per_clip:
                self.clip_events.append(ev)
                if any(c is self.fps for c in (inputs if isinstance(inputs, (list, tuple)) else [inputs])):
                    self.fps_events.append(ev)
            events.append(ev)
        return events

    def clears(self, *pairs: tuple[gr.components.Component, object]) -> None:
        """Register outputs computed on the clip: they return to their empty value when the clip changes."""
        self.resets.extend(pairs)

    def wire_resets(self) -> None:
        """After every tab registered its outputs and events: another clip (upload, sample, the player's x, a
        library hit) clears them and cancels the computations in flight, whose results belong to the previous clip
        (one that ended after the clear put the old clip's moments on the new one). Another frame rate cancels the
        computations that sample at it (what is shown stays: it is of this clip). Runs in the browser's queue slot
        at once (queue=False), so no stale result waits for a worker."""
        components = [c for c, _ in self.resets]
        values = [v for _, v in self.resets]
        self.video.change(lambda: tuple(values), None, components, queue=False, api_name=False,
                          show_progress="hidden", cancels=self.clip_events)
        self.fps.change(None, None, None, queue=False, api_name=False, show_progress="hidden",
                        cancels=self.fps_events)


def build_source(ctx: AppContext) -> tuple[Source, gr.Button, Callable[[gr.Request], str]]:
    """Player (with the moment timeline) on the left; clip, encoder, encode/cancel on the right. Returns the
    Source, the Cancel button and its handler (build_app wires it to cancel every heavy event)."""
    samples = sample_clips()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            video = gr.Video(value=ctx.video, label="Video (upload any mp4, webm, avi, mov)", sources=["upload"],
                             elem_id=PLAYER_ID, format=None, height=260, interactive=True, autoplay=False,
                             buttons=["download"])
            timeline = gr.HTML(timeline_html(), js_on_load=PLAYER_JS, css_template=TIMELINE_CSS, elem_id=TIMELINE_ID,
                               padding=False)
            loop = gr.Checkbox(False, label="Loop a moment when it plays", elem_id="ml-loop", container=False)
        with gr.Column(scale=2, min_width=320):
            with gr.Row():
                sample = gr.Dropdown(list(samples), value=_sample_name(samples, ctx.video_source),
                                     label="Sample clip", scale=3)
                fps = number_dropdown(FPS_CHOICES, 1.0, label="Frames per second", scale=2, elem_id="ml-fps")
            encoder = gr.Dropdown(ctx.encoder_choices(), value=ctx.encoder, label="Encoder", allow_custom_value=True,
                                  elem_id="ml-encoder", info=None if ctx.local else
                                  "more: checkpoints in the server's models folder ($MOMENTLENS_MODELS)")
            encoder_info = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-encoder-info")
            with gr.Row():
                upload_btn = gr.UploadButton("Upload another clip", file_types=["video"], file_count="single",
                                             variant="primary", elem_id="ml-upload", size="md", scale=3, min_width=150)
                encode_btn = gr.Button("Encode", variant="secondary", elem_id="ml-encode", size="md", scale=2,
                                       min_width=80)
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="ml-cancel", size="md", scale=2, min_width=80)
            if ctx.local:
                with gr.Accordion("More encoders: add your checkpoint, or fetch CLIP or video-model weights",
                                  open=False):
                    with gr.Row():
                        ckpt_btn = gr.UploadButton("Add a checkpoint (.pt, .safetensors)",
                                                   file_types=[".pt", ".pth", ".bin", ".ckpt", ".safetensors"],
                                                   elem_id="ml-add-ckpt", size="md")
                    with gr.Row():
                        weights_name = gr.Dropdown(downloadable(), value="clip:ViT-B/32", label="Published weights", scale=3)
                        weights_btn = gr.Button("Download", scale=1, min_width=100, elem_id="ml-weights-btn")
                    weights_note = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-weights-note")
            status = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-status", min_height=56)  # room for the progress bar
    opened = gr.State([])
    source = Source(video, encoder, fps, status, opened, encoder_info, timeline, sample,
                    gpu_concurrency=ctx.gpu_concurrency, tracked=ctx.tracked)
    source.clears((timeline, timeline_html()))  # not the status: it tells what was just loaded
    del loop  # read in the browser only (PLAYER_JS)

    @user_errors
    def pick_sample(name: str, opened_videos: list):
        if name not in samples:
            raise gr.Error(f"Unknown sample {name!r}; pick one from the list.")

        path = ctx.servable(playable_path(samples[name]))
        return path, f"Sample **{name}** loaded.", _remember(opened_videos, path)

    def load_upload(video, opened_videos: list, request: gr.Request, progress: gr.Progress, from_player: bool):
        """Check and (if needed) convert an uploaded clip. A file that is not a usable video is refused in the
        status line (and a toast) and the clip shown before stays: nothing else is cleared or badged."""
        path = require_video(video)
        ctx.track_upload(request, path)
        try:
            info = probe(path)
            note = f"{Path(path).name}: {info.duration:.1f} s, {info.width}x{info.height}, {info.codec}"
            if not is_browser_playable(path):
                progress(0.0, desc="converting to H.264 for the browser")
                path = ctx.servable(playable_path(path))  # the converted copy lives in the cache: serve a copy
                note += " (converted to H.264 mp4 so the browser can play it)"
        except MomentLensError as err:
            text = sentence(str(err), {Path(path).name})
            log.info("upload refused: %s", text)
            gr.Warning(text)
            previous = (opened_videos or [ctx.video])[-1]
            keep = (previous if previous else None) if from_player else gr.skip()
            return keep, f"**Not loaded**: {text} The clip shown before stays.", gr.skip(), gr.skip()
        return path, note + ".", _remember(opened_videos, path), None  # no sample is selected now

    @user_errors
    def prepare_upload(video, opened_videos: list, request: gr.Request = None, progress=gr.Progress()):
        return load_upload(video, opened_videos, request, progress, from_player=True)

    @user_errors
    def upload_clip(file, opened_videos: list, request: gr.Request = None, progress=gr.Progress()):
        return load_upload(file, opened_videos, request, progress, from_player=False)

    @ctx.tracked("the encoding")
    @user_errors
    def encode(video, encoder_name: str, fps: float, request: gr.Request, progress=gr.Progress()):
        if not video:  # said next to the button (a toast is easy to miss)
            return "No video to encode yet: upload a clip or pick a sample clip first."
        path = require_video(video)
        stop = ctx.stop_event(request)
        stop.clear()
        feats = encode_video(path, ctx.resolve_encoder(encoder_name), fps=float(fps), progress=progress_bridge(progress, stop),
                             should_stop=stop.is_set)
        how = "from the cache" if feats.from_cache else "encoded and cached"
        return f"{len(feats)} frames of {Path(path).name} ({feats.duration:.1f} s) {how}: queries are now instant."

    def request_stop(request: gr.Request):
        ctx.stop_event(request).set()  # running handlers stop at their next progress step
        return cancel_message(ctx.running(request), ctx.running(request, stoppable=False))

    if ctx.local:
        @ctx.tracked("the download")
        @user_errors
        def fetch_weights(name: str, request: gr.Request = None, progress=gr.Progress()):
            if name not in downloadable():
                raise gr.Error(f"Pick a model from the list ({', '.join(downloadable())}).")
            stop = ctx.stop_event(request)
            stop.clear()
            try:
                path = get_weights(name, progress=progress_bridge(progress, stop), should_stop=stop.is_set)
            except DownloadError as err:  # offline: say how to place the file by hand, in place
                return f"**Not downloaded**: {err}", gr.skip()
            choices = ctx.session_encoder_choices(request, name)
            default = " `momentlens app` now starts on it by default." if default_encoder_name() == name else ""
            return (f"{name} weights in `{path}` (checksum verified); selected.{default}",
                    gr.update(choices=choices, value=name))

        ev = weights_btn.click(fetch_weights, weights_name, [weights_note, encoder], api_name="weights_get",
                               concurrency_id="download", concurrency_limit=1)
        source.heavy_events.append(ev)

        @user_errors
        def add_checkpoint(file, request: gr.Request = None):
            path = upload_path(file)
            if not path:
                raise gr.Error("No checkpoint was uploaded; pick a .pt file.")
            ctx.track_upload(request, path)
            name = ctx.offers.add_model(path, Path(path).name)  # refuses what no encoder family reads
            return (f"Added to the models folder as `{Path(name.partition(':')[2]).name}`; selected.",
                    gr.update(choices=ctx.session_encoder_choices(request, name), value=name))

        ckpt_btn.upload(add_checkpoint, ckpt_btn, [weights_note, encoder], api_name="add_checkpoint",
                        concurrency_id="video", concurrency_limit=2)

    sample.input(pick_sample, [sample, opened], [video, status, opened], api_name="sample",
                 concurrency_id="video", concurrency_limit=2)
    video.upload(prepare_upload, [video, opened], [video, status, opened, sample], api_name="prepare",
                 concurrency_id="video", concurrency_limit=2)
    upload_btn.upload(upload_clip, [upload_btn, opened], [video, status, opened, sample], api_name="upload_clip",
                      concurrency_id="video", concurrency_limit=2)
    @ctx.tracked("loading the encoder", stoppable=False)
    @user_errors
    def describe(name: str, request: gr.Request = None) -> str:  # loads the encoder, so that a query finds it ready
        return describe_encoder(ctx.resolve_encoder(name))

    encoder.change(describe, encoder, encoder_info,
                   api_name="encoder_info",
                   concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    enc_event = encode_btn.click(encode, [video, encoder, fps], status, api_name="encode",
                                 concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)
    source.heavy_events.append(enc_event)
    return source, cancel_btn, request_stop


def cancel_message(running: list[str], going_on: Iterable[str] = ()) -> str:
    """What Cancel says: what it stopped, or that nothing of the page had started (a request still waiting for the
    model queue is dropped by Gradio before it starts), and what goes on because it cannot be stopped."""
    if not running:
        rest = "".join(f" {sentence(w)} goes on: it cannot be interrupted, and the next request uses it." for w in going_on)
        return ("**Cancelled**: nothing of this page had started computing; a request still waiting its turn, if "
                "any, was dropped." + rest)
    what = running[0] if len(running) == 1 else ", ".join(running[:-1]) + " and " + running[-1]
    return f"**Cancelled**: {what} {'was' if len(running) == 1 else 'were'} stopped; nothing partial was kept."


def _clear_status() -> str:
    return ""


def _remember(opened: list, path: str) -> list:
    return list(dict.fromkeys([*(opened or []), path]))[-16:]


def _sample_name(samples: dict[str, Path], path: str | Path | None) -> str | None:
    if path is None:
        return None
    for name, p in samples.items():
        if Path(p) == Path(path):
            return name
    return None
