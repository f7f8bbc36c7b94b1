"""Library tab: search a whole video library; results as thumbnails with video name and times; a click opens
that video in the player at the moment. On this machine's own app (`momentlens app` on 127.0.0.1), a folder can
be added from here (progress while indexing). A shared app searches only a library its owner named with
`momentlens app --library DIR`, and adds nothing."""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import gradio as gr

from app.common import (
    GPU_QUEUE,
    AppContext,
    progress_bridge,
    query_validator,
    require_text,
    user_errors,
    whole,
)
from app.source import Source, _remember
from backends.core.contracts import count
from backends.core.errors import MomentLensError
from backends.core.paths import sample_clips
from backends.io.playback import playable_path
from backends.retrieval.library import CONFIDENCE_MEANING, LibraryError
from backends.views.library import library_add_view, library_search_view, open_library

# after the player has loaded the opened video, play the chosen moment (the player's own script, app.source)
PLAY_WHEN_LOADED_JS = """
(moment) => {
  if (!moment) return;
  const [start, end] = moment.split(',').slice(0, 2).map(Number);
  const name = moment.split(',').slice(2).join(',');  // the opened file's name: wait until the player shows it
  const t0 = Date.now();
  let played = null;
  // the player may swap or reload its <video> after the new value arrives (even for the clip it already
  // shows): play once it shows the file, and again while, in the first seconds, it jumps back before the moment
  const tick = () => {
    const v = document.querySelector('#ml-player video');
    const ready = v && v.readyState >= 1 && decodeURIComponent(v.currentSrc || '').includes(name);
    if (ready && window.mlPlayMoment && (played !== v || v.currentTime < start - 0.5)) {
      window.mlPlayMoment(start, end);
      played = v;
    }
    if (Date.now() - t0 < (played ? 4000 : 20000)) setTimeout(tick, 250);
  };
  tick();
}
"""


def _stats_line(stats: dict) -> str:
    if not stats["videos"]:
        return "The library is empty" + (": add a folder below, or the sample clips." if stats.get("can_add") else ".")
    errors = f" · {len(stats['errors'])} unreadable file(s) left out" if stats["errors"] else ""
    return (f"**{stats['videos']} videos** ({stats['hours'] * 60:.1f} min) · {stats['clips']} clips in a "
            f"{stats['index'] or 'not yet built'} index · encoder `{stats['encoder']}` at {stats['fps']:g} fps{errors}")


def build_library_tab(ctx: AppContext, source: Source) -> None:
    library = ctx.library
    if library is None:
        gr.Markdown("No library is served by this app. Start it with `momentlens app --library DIR` to search one "
                    "(build it with `momentlens index add FOLDER`).", elem_classes=["ml-note"], elem_id="ml-library-stats")
        return
    try:
        first = _stats_line({**open_library(library).stats(), "can_add": ctx.local})
    except MomentLensError as err:  # e.g. a damaged catalogue: said here, and every other tab still serves
        first = f"The library cannot be used: {err}"
    stats = gr.Markdown(first, elem_classes=["ml-note"], elem_id="ml-library-stats")
    if ctx.local:
        with gr.Row(equal_height=True):
            folder = gr.Textbox(label="Add a folder or a video file of this machine (searched recursively)", scale=5,
                                placeholder="/home/me/videos", elem_id="ml-library-folder")
            add = gr.Button("Add to library", scale=1, min_width=150, elem_id="ml-library-add")
            samples = sample_clips()  # the clips the Sample clip menu offers, so a new library has something to search
            add_samples = gr.Button(f"Add the {len(samples)} sample clips", scale=1, min_width=150,
                                    elem_id="ml-library-samples", visible=bool(samples))
    with gr.Row(equal_height=True):
        query = gr.Textbox(label="Search the library", value="a cartoon bunny on a green hill", scale=5, max_lines=2,
                           elem_id="ml-library-query")
        top_k = gr.Slider(1, 16, value=8, step=1, label="Moments", scale=2)
        search = gr.Button("Search", variant="primary", scale=1, min_width=140, elem_id="ml-library-btn")
    summary = gr.Markdown(elem_classes=["ml-note"], elem_id="ml-library-summary")
    gallery = gr.Gallery(label="Moments across the library (click one: it plays in the player)", columns=4,
                         allow_preview=False, height="auto", object_fit="cover", elem_id="ml-library-results")
    moment = gr.Textbox(visible=False)
    hits = gr.State([])

    @ctx.tracked("the library search")
    @user_errors
    def run_search(query_text: str, k: float = 8, request: gr.Request = None):
        require_text(query_text)
        try:
            result, thumbs = library_search_view(query_text, library, top_k=whole(k, "Top-k"))
        except LibraryError:
            stats = open_library(library).stats()  # (read only here: a search need not count the catalogue)
            if stats["videos"]:
                raise
            # nothing to search is not an error (its red badge stayed on the gallery after clips were added)
            return [], _stats_line({**stats, "can_add": ctx.local}) + " Then search again.", []
        out = ctx.session_dir(request, "library")
        items = []
        for i, (hit, thumb) in enumerate(zip(result.results, thumbs), start=1):
            # times and confidence first: a long caption is cut at the thumbnail's edge (the score is in the summary)
            caption = f"#{i} {hit.start:.1f}–{hit.end:.1f} s · conf. {hit.confidence:.2f} · {Path(hit.video).name}"
            if thumb is None:
                continue
            png = out / f"hit_{i:02d}.png"
            cv2.imwrite(str(png), cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
            items.append((str(png), caption))
        text = (f"**{count(len(result.results), 'moment')}** for “{html.escape(result.query)}” from "
                f"{len(result.candidates)} candidate videos · encoder `{result.encoder}` · scores (best 4 s clip cosine in each): "
                + ", ".join(f"#{i} {h.score:.3f}" for i, h in enumerate(result.results, start=1))
                + f". Confidence: {CONFIDENCE_MEANING}.")
        text = "".join(f"⚠ {html.escape(note)}\n\n" for note in result.notes()) + text
        return items, text, [h.to_dict() for h in result.results if h is not None]

    @user_errors
    def open_hit(found: list, opened_videos: list, evt: gr.SelectData):
        if not found or evt.index is None or not 0 <= int(evt.index) < len(found):
            raise gr.Error("Search first, then click a moment.")
        hit = found[int(evt.index)]  # from this session's own search (server-side state), never a typed path
        path = ctx.servable(playable_path(hit["video"]))
        note = f"**{Path(hit['video']).name}** from the library, at {hit['start']:.1f}–{hit['end']:.1f} s."
        # the Sample clip menu no longer names what plays (as after an upload)
        return path, note, _remember(opened_videos, path), f"{hit['start']},{hit['end']},{Path(path).name}", None

    check = query_validator(video_at=None, query_at=0)
    ev = search.click(run_search, [query, top_k], [gallery, summary, hits], api_name="library_search",
                      concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency, validator=check)
    query.submit(run_search, [query, top_k], [gallery, summary, hits], api_name=False,
                 concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency, validator=check)
    source.heavy_events.append(ev)
    # not in the API: a gallery click's SelectData cannot come from a client (it was listed and always failed)
    gallery.select(open_hit, [hits, source.opened], [source.video, source.status, source.opened, moment, source.sample],
                   api_name=False).then(None, moment, None, js=PLAY_WHEN_LOADED_JS)

    if ctx.local:
        def add_to_library(paths: list[Path], request: gr.Request | None, progress: gr.Progress) -> str:
            stop = ctx.stop_event(request)
            stop.clear()
            encoder = open_library(library).encoder or ctx.encoder  # a library keeps the encoder it was built with
            report, after = library_add_view(paths, library, encoder=encoder,
                                              progress=progress_bridge(progress, stop), should_stop=stop.is_set)
            line = _stats_line({**after, "can_add": True})
            line += (f"<br>Added {len(report.added)}, unchanged {len(report.unchanged)}, skipped "
                     f"{len(report.skipped)}" + "".join(f"<br>· {html.escape(Path(f).name)}: {html.escape(r)}"
                                                        for f, r in report.skipped[:10]))
            return line

        @ctx.tracked("adding to the library")
        @user_errors
        def run_add(path_text: str, request: gr.Request = None, progress=gr.Progress()):
            if not path_text or not path_text.strip():
                raise gr.Error("Type the folder (or video file) to add, e.g. /home/me/videos.")
            return add_to_library([Path(path_text.strip()).expanduser()], request, progress)

        @ctx.tracked("adding to the library")
        @user_errors
        def run_add_samples(request: gr.Request = None, progress=gr.Progress()):
            return add_to_library(list(samples.values()), request, progress)

        for ev in (add.click(run_add, folder, stats, api_name="library_add", concurrency_id=GPU_QUEUE,
                             concurrency_limit=ctx.gpu_concurrency),
                   add_samples.click(run_add_samples, None, stats, api_name="library_add_samples",
                                     concurrency_id=GPU_QUEUE, concurrency_limit=ctx.gpu_concurrency)):
            source.heavy_events.append(ev)
