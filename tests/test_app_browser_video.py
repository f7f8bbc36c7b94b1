"""A video encoder trained with `momentlens train cvrl`, in a real browser: picked from the encoder list (the
models folder), then query by clip, self-similarity, Grad-CAM on one clip and the augmentations it was trained
with. Screenshots go to test-artifacts/video_*.png."""

from __future__ import annotations

import pytest

# importing it skips this module too where Chromium or Playwright is missing
from test_app_browser import ARTIFACTS, CHROMIUM_ARGS, TINY, _choose, _free_port

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def trained(small_video_encoder):
    return small_video_encoder


@pytest.fixture(scope="module")
def page(trained):
    from playwright.sync_api import sync_playwright
    from test_app_browser import CHROMIUM

    from app import build_app

    models, _ = trained
    demo = build_app(encoder=TINY, test_encoders=True, models_dir=models)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#ml-chips .ml-chip", timeout=120_000)
        yield page
        browser.close()
    demo.close()


def test_a_trained_video_encoder_in_every_tab(page, trained):
    _, name = trained
    label = "video:cvrl_small.safetensors"  # the list shows the file's name, not the server's path
    _choose(page, "#ml-encoder", label)
    page.wait_for_function("(n) => document.querySelector('#ml-encoder input').value === n", arg=label)

    # query by clip: the moments most like 20-25 s of the sample (a text query says to use a clip)
    page.get_by_text("... or query by clip", exact=False).first.click()  # opens the accordion
    page.click("#ml-clip-submit")
    page.wait_for_function("document.querySelector('#ml-summary')?.innerText.includes('clip 20.0-25.0 s')",
                           timeout=180_000)
    chips = page.locator("#ml-chips .ml-chip")
    assert chips.count() >= 1
    for i in range(chips.count()):  # none overlaps the query clip
        start, end = (float(chips.nth(i).get_attribute(k)) for k in ("data-start", "data-end"))
        assert min(end, 25.0) - max(start, 20.0) <= 1e-6
    page.screenshot(path=str(ARTIFACTS / "video_query_by_clip.png"))

    page.get_by_role("tab", name="Self-similarity").click()
    page.click("#ml-tsm-btn")
    page.wait_for_selector("#ml-tsm .js-plotly-plot .main-svg", timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "video_selfsimilarity.png"), full_page=True)

    page.get_by_role("tab", name="Grad-CAM").click()
    page.click("#ml-gradcam-btn")
    page.wait_for_selector("#ml-gradcam .js-plotly-plot .main-svg", timeout=180_000)
    steps = page.evaluate("document.querySelector('#ml-gradcam .js-plotly-plot').layout.sliders[0].steps.length")
    assert steps == 4  # one map per frame of the encoder's 4-frame clip
    page.screenshot(path=str(ARTIFACTS / "video_gradcam.png"), full_page=True)

    page.get_by_role("tab", name="Augmentations").click()
    page.click("#ml-augment-btn")
    page.wait_for_selector("#ml-augment .js-plotly-plot .main-svg", timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "video_augmentations.png"), full_page=True)
    errors = page.evaluate("Array.from(document.querySelectorAll('.error')).filter(e => !e.className.includes('toast'))"
                           ".length")
    assert errors == 0
