"""Widget panels without a kernel: set a control's `.value`, check the figure and `panel.result` changed."""

import numpy as np
import pytest

from backends.retrieval import retrieve
from widgets import AugmentationPanel, Explorer, GradCamPanel, RetrievalPanel, ScalingPanel, SelfSimilarityPanel

TINY = "conse-tiny-random"


def test_retrieval_panel_runs_on_a_query_and_seeks(realmix_video):
    panel = RetrievalPanel(video=realmix_video, encoder=TINY)
    assert panel.result is None and len(panel.saliency.data) == 0
    panel.query.value = "a hand turning a cup"  # continuous_update=False: one run per committed value
    r = panel.result
    direct = retrieve(realmix_video, "a hand turning a cup", encoder=TINY)
    assert r["query"] == "a hand turning a cup" and r["moments"] == direct.to_json()["moments"]
    assert [row["start"] for row in r["table"]] == [round(m["start"], 2) for m in r["moments"]]
    assert len(panel.saliency.data) >= 1 and len(panel.map.data) >= 1
    assert np.allclose(panel.saliency.data[0].y, r["saliency"]["values"])
    assert len(panel.chips.children) == len(r["moments"])
    # a moment button restarts the player at the moment's start
    panel.chips.children[-1].click()
    assert f"#t={r['moments'][-1]['start']:.3f}" in panel.player.value
    panel.top_k.value = 2
    assert len(panel.result["moments"]) <= 2


def test_retrieval_panel_bad_input_is_one_sentence(tmp_path):
    panel = RetrievalPanel(video=tmp_path / "missing.mp4", encoder=TINY)
    panel.query.value = "anything"
    assert "No such video file" in panel.runner.status.value and panel.result is None
    panel.video.path.value = str(tmp_path)
    panel.query.value = "   "
    assert "empty" in panel.runner.status.value or "folder" in panel.runner.status.value


def test_self_similarity_panel_switches_kind(realmix_video):
    panel = SelfSimilarityPanel(video=realmix_video, encoder=TINY)
    panel.run()
    assert panel.result["kind"] == "repnet"
    repnet = np.array(panel.result["matrix"])
    assert np.allclose(repnet.sum(axis=1), 1, atol=len(repnet) * 5e-5)  # softmax rows (entries rounded to 4 places)
    panel.kind.value = "cosine"
    cosine = np.array(panel.result["matrix"])
    assert panel.result["kind"] == "cosine" and np.allclose(np.diag(cosine), 1, atol=1e-3)
    assert len(panel.figure.data) >= 1
    panel.t2.value = 40.0
    assert all(len(img.value) > 1000 for img in panel.frames.children)


def test_augmentation_panel_seed_changes_the_draw(realmix_video):
    panel = AugmentationPanel(video=realmix_video)
    panel.run()
    first = panel.result["cvrl"]
    panel.seed.value = 7
    assert panel.result["seed"] == 7 and panel.result["cvrl"] != first
    panel.seed.value = 0
    assert panel.result["cvrl"] == first  # deterministic in the seed
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
    means = [row["mean"] for row in panel.result["layers"]]
    assert means == pytest.approx([0.5, -0.25])
    assert len(panel.figure.data) >= 1


def test_explorer_tabs_every_panel(realmix_video):
    explorer = Explorer(video=realmix_video, encoder=TINY)
    assert [type(p).__name__ for p in explorer.panels] == [
        "RetrievalPanel", "SelfSimilarityPanel", "AugmentationPanel", "GradCamPanel", "ScalingPanel"]
    assert len(explorer.widget.children) == 5 and explorer.widget.get_title(0) == "Moment retrieval"
