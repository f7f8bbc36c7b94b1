"""The momentlens web app (Gradio): `build_app()` assembles one module per tab around a shared video panel.

>>> demo = build_app()                 # bundled offline encoder, the sample clip preloaded
>>> demo.launch()                      # http://127.0.0.1:7860 (see `momentlens app --help`)

Every event has an api_name, so the app is scriptable with gradio_client:
`Client(url).predict(handle_file("clip.mp4"), "a dog runs", api_name="/retrieve")`.
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
from pathlib import Path

import gradio as gr

from app.augment_tab import build_augment_tab
from app.common import GPU_QUEUE, AppContext
from app.compare_tab import build_compare_tab
from app.gradcam_tab import build_gradcam_tab, follow_pick, follow_retrieval
from app.library_tab import build_library_tab
from app.retrieval_tab import PICKED_CSS, build_retrieval_tab
from app.scaling_tab import build_scaling_tab
from app.similarity_tab import build_similarity_tab
from app.source import build_source, describe_encoder
from backends.core.paths import default_sample_clip
from backends.core.paths import models_dir as default_models_dir
from backends.encoders import canonical_encoder_name, default_encoder_name
from backends.io.playback import playable_path
from backends.views.offers import ServerOffers

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
QUEUE_MAX_SIZE = 32  # waiting requests beyond this are refused with "queue full"
APP_CSS = """
.ml-note { font-size: 0.92em; color: var(--body-text-color-subdued); }
#ml-header h1 { margin-bottom: 0; }
#ml-header p { margin-top: 2px; color: var(--body-text-color-subdued); }
#ml-player video { background: #000; }
""" + PICKED_CSS
HEADER = """# momentlens
See what your video encoders do, on your own clips: moments for a query, encoders side by side, self-similarity,
augmentations, Grad-CAM, temporal scaling. Everything runs locally."""


MAX_UPLOAD = os.environ.get("MOMENTLENS_MAX_UPLOAD", "2gb")  # larger uploads are refused by the server
CACHE_SWEEP = (900, 6 * 3600)  # every 15 min, delete this app's Gradio cache files older than 6 h


class MomentLensApp(gr.Blocks):
    """gr.Blocks whose launch() defaults to the app's look, 127.0.0.1, the bounded queue and the upload limit,
    and whose close() removes the app's work folder."""

    momentlens_context: AppContext

    def launch(self, *args, **kwargs):
        kwargs.setdefault("css", APP_CSS)
        kwargs.setdefault("theme", gr.themes.Soft(primary_hue="indigo"))
        kwargs.setdefault("server_name", DEFAULT_HOST)
        kwargs.setdefault("max_file_size", MAX_UPLOAD)
        return super().launch(*args, **kwargs)

    def close(self, *args, **kwargs):
        try:
            return super().close(*args, **kwargs)
        finally:
            self.momentlens_context.close()


def build_app(encoder: str | None = None, video: str | Path | None = None, gpu_concurrency: int = 1,
              queue_size: int = QUEUE_MAX_SIZE, models_dir: str | Path | None = None,
              test_encoders: bool = False, local: bool = False, library: str | Path | None = None) -> MomentLensApp:
    """Assemble the tabs. `encoder` is preselected (default: the registry's default), `video` preloaded
    (default: the sample clip); model-heavy handlers share one queue with `gpu_concurrency` workers.
    Remote callers may pick only the encoders the server offers: the registry's, `encoder`, and the
    checkpoints in `models_dir` (default `$MOMENTLENS_MODELS`, else `<cache>/models`); the random test
    encoders only with `test_encoders=True`. `local` shows the panel that adds a checkpoint or fetches CLIP weights
    (`momentlens app` sets it when serving this machine only, without a share link) and lets the Library tab add
    folders; `library` is the video library the Library tab searches (None: the tab says none is served)."""

    workdir = Path(tempfile.mkdtemp(prefix="momentlens-app-"))
    chosen = canonical_encoder_name(encoder or default_encoder_name())  # the dropdown's value is one of its choices
    offers = ServerOffers(pinned_encoders=(chosen,) if encoder else (), trusted_dirs=(workdir,),
                          models=Path(models_dir) if models_dir is not None else default_models_dir(),
                          test_encoders=test_encoders)
    ctx = AppContext(encoder=chosen, video=None, workdir=workdir, gpu_concurrency=gpu_concurrency, offers=offers,
                     local=local, library=Path(library).expanduser() if library is not None else None)
    clip = Path(video) if video is not None else default_sample_clip()
    ctx.video_source = clip
    if clip is not None:
        ctx.video = ctx.servable(playable_path(clip))

    atexit.register(ctx.close)  # also on Ctrl-C and SIGTERM (`momentlens app` turns SIGTERM into an exit)
    with MomentLensApp(title="momentlens", delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(HEADER, elem_id="ml-header")
        source, cancel_btn, request_stop = build_source(ctx)
        with gr.Tabs():
            with gr.Tab("Moment retrieval", id="retrieval"):
                retrieval = build_retrieval_tab(ctx, source)
            with gr.Tab("Compare encoders", id="compare"):
                build_compare_tab(ctx, source)
            with gr.Tab("Self-similarity", id="tsm"):
                build_similarity_tab(ctx, source)
            with gr.Tab("Augmentations", id="augment"):
                build_augment_tab(ctx, source)
            with gr.Tab("Grad-CAM", id="gradcam"):
                gradcam = build_gradcam_tab(ctx, source)
            with gr.Tab("Temporal scaling", id="scaling"):
                build_scaling_tab(ctx, source)
            with gr.Tab("Library", id="library"):
                build_library_tab(ctx, source)
        follow = [gradcam.query, gradcam.start, gradcam.end, gradcam.note]
        for ev in retrieval.found:  # Grad-CAM looks at the query and top moment just retrieved
            ev.success(follow_retrieval, retrieval.last, follow, queue=False, api_name=False, show_progress="hidden")
        # ... or at the moment whose chip was clicked (before the Grad-CAM tab was ever opened too)
        retrieval.picked.change(follow_pick, retrieval.picked, follow[1:], queue=False, api_name=False,
                               show_progress="hidden")
        cancel_btn.click(request_stop, None, source.status, cancels=source.heavy_events, api_name="cancel",
                         queue=False)

        def on_load(encoder_name: str):
            try:
                info = describe_encoder(ctx.resolve_encoder(encoder_name))
            except Exception as err:  # shown in place; choosing another encoder retries
                info = f"Encoder {encoder_name!r} is not usable: {err}"
            return info, [ctx.video] if ctx.video else []

        def on_unload(request: gr.Request):  # the tab closed: its uploads, exports and checkpoints go
            ctx.end_session(request)

        demo.unload(on_unload)
        demo.load(on_load, source.encoder, [source.encoder_info, source.opened], api_name=False,
                  concurrency_id=GPU_QUEUE, concurrency_limit=gpu_concurrency)
        if ctx.video:  # the example query on the sample clip, so the first screen shows results
            example = demo.load(*retrieval.example, api_name=False, concurrency_id=GPU_QUEUE,
                                concurrency_limit=gpu_concurrency)
            example.success(follow_retrieval, retrieval.last, follow, queue=False, api_name=False,
                            show_progress="hidden")
            source.clip_events.append(example)  # a clip picked while it runs cancels it too
        # last, once every event computed on the clip is registered: another clip clears their outputs and cancels
        # them
        source.wire_resets()
    demo.queue(max_size=queue_size, default_concurrency_limit=2)
    demo.momentlens_context = ctx
    return demo
