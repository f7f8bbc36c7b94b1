"""Annotation readers, the momentlens / Charades-STA / QVHighlights protocols, and the evaluate CLI."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from backends.cli import evaluation as eval_cli
from backends.core.errors import AnnotationError
from backends.evaluation.annotations import (
    AnnotatedQuery,
    load_annotations,
    read_charades_durations,
    read_predictions,
)
from backends.evaluation.charades import CHARADES_STA, evaluate_charades
from backends.evaluation.metrics import MOMENTLENS, Protocol, evaluate_windows
from backends.evaluation.qvhighlights import (
    MAP_IOU_THRESHOLDS,
    R1_IOU_THRESHOLDS,
    evaluate_qvhighlights,
    interpolated_ap,
)


def _q(qid, windows, vid="v", query="q", duration=30.0, **kw):
    return AnnotatedQuery(qid=qid, vid=vid, query=query, duration=duration, windows=windows, **kw)


# --- readers --------------------------------------------------------------------------------
def test_charades_reader_clips_ends_and_drops_empty(tmp_path):
    f = tmp_path / "sta.txt"
    f.write_text("AAA 1.0 5.0##person opens a door.\nAAA 28.0 35.0##person sits.\nBBB 12.0 14.0##person eats.\n\n")
    q = load_annotations(f)
    assert [x.windows for x in q] == [[(1.0, 5.0)], [(28.0, 35.0)], [(12.0, 14.0)]]
    q = load_annotations(f, durations={"AAA": 30.0, "BBB": 10.0})
    # AAA's second line is clipped to 30; BBB's start 12 >= its 10 s duration: dropped
    assert [(x.vid, x.windows, x.duration) for x in q] == [("AAA", [(1.0, 5.0)], 30.0), ("AAA", [(28.0, 30.0)], 30.0)]
    assert q[0].query == "person opens a door."


def test_charades_reader_error_names_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("AAA 1.0 5.0##ok\nAAA one 5.0##bad start\n")
    with pytest.raises(AnnotationError, match=r"bad\.txt line 2"):
        load_annotations(f)


def test_jsonl_and_json_errors_name_the_line(tmp_path):
    f = tmp_path / "qv.jsonl"
    f.write_text('{"qid": 1, "vid": "a", "query": "x", "duration": 10, "relevant_windows": [[0, 2]]}\n{"qid": 2,\n')
    with pytest.raises(AnnotationError, match=r"qv\.jsonl line 2"):
        load_annotations(f)
    g = tmp_path / "simple.json"
    g.write_text('{"video": "a.mp4",\n "duration": 10,\n "queries": [{"query": "x"}]}')
    with pytest.raises(AnnotationError, match=r"simple\.json line"):
        load_annotations(g)
    p = tmp_path / "pred.jsonl"
    p.write_text('{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}\n{"qid": 2, "pred_relevant_windows": [["a"]]}\n')
    with pytest.raises(AnnotationError, match=r"pred\.jsonl line 2"):
        read_predictions(p)


@pytest.mark.parametrize("queries, says", [
    ([{"query": "x", "gt": [5]}], "query 0's `gt` [5] is not [start, end] in seconds"),
    ("x", "`queries` must be a list of {query, gt} objects"),
    (["x"], "query 0 must be an object {query, gt}"),
    ([{"query": "x", "gt": [8, 2]}], "query 0's `gt` [8, 2] is not a window: it needs 0 <= start < end"),
    ([{"query": "x", "gt": [0, 2]}, {"query": "y", "gt": [-5, 1e308]}], "query 1's `gt` [-5, 1e+308] is not a window"),
    ([{"query": "x", "gt": [float("nan"), 2]}], "query 0's `gt` start must be a finite number of seconds, got NaN"),
    ([{"query": "x", "gt": ["soon", 2]}], "query 0's `gt` start must be a number of seconds, got \"soon\""),
])
def test_a_malformed_simple_annotation_says_what_is_wrong_in_the_formats_words(tmp_path, queries, says):
    """Python's own words ("list index out of range", "string indices must be integers") meant nothing to a user,
    and a reversed or NaN ground truth was taken and scored 0 without a word."""
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"video": "a.mp4", "duration": 10, "queries": queries}))
    with pytest.raises(AnnotationError) as err:
        load_annotations(f)
    assert says in str(err.value) and "index" not in str(err.value), str(err.value)


def test_simple_annotations_that_loaded_before_still_load(tmp_path):
    """No relevant window (`"gt": []`) and windows with a score after them were read before the shape checks; a
    bad number in the other formats still names itself; a 400-digit number is a sentence, not OverflowError."""
    f = tmp_path / "ok.json"
    f.write_text(json.dumps({"video": "a.mp4", "duration": 10, "queries": [
        {"query": "x", "gt": []}, {"query": "y", "gt": [[0, 2, 1.0], ["3.5", "4"]]}]}))
    assert [q.windows for q in load_annotations(f)] == [[], [(0.0, 2.0), (3.5, 4.0)]]
    g = tmp_path / "qv.jsonl"
    g.write_text('{"qid": 1, "vid": "a", "query": "x", "duration": 10, "relevant_windows": [[1, "two"]]}\n')
    with pytest.raises(AnnotationError, match="could not convert string to float: 'two'"):
        load_annotations(g)
    h = tmp_path / "big.json"
    h.write_text('{"video": "a.mp4", "duration": 1' + "0" * 400 + ', "queries": []}')
    with pytest.raises(AnnotationError, match="`duration` must be a number of seconds"):
        load_annotations(h)


def test_activitynet_and_simple_formats(tmp_path):
    f = tmp_path / "anet.json"
    f.write_text(json.dumps({"v_x": {"duration": 50.0, "timestamps": [[1, 4], [9, 6]], "sentences": ["a", "b"]}}))
    q = load_annotations(f)
    assert [(x.qid, x.windows, x.duration) for x in q] == [("v_x#0", [(1.0, 4.0)], 50.0), ("v_x#1", [(6.0, 9.0)], 50.0)]


def test_shared_files_parse(shared_data):
    rm = load_annotations(shared_data / "realmix_dev.json")
    assert len(rm) == 8 and rm[0].vid == "realmix_dev.mp4" and rm[0].windows == [(0.0, 20.0)]
    cy = load_annotations(shared_data / "charades_Y1HGC.json")
    assert [x.windows for x in cy] == [[(0.2, 9.8)], [(1.7, 12.1)]]
    ann = shared_data / "annotations"
    durs = read_charades_durations(ann / "Charades_v1_train.csv", ann / "Charades_v1_test.csv")
    test = load_annotations(ann / "charades_sta_test.txt", durations=durs)
    assert len(test) == 3720 and all(s < e <= x.duration for x in test for s, e in x.windows)
    qv = load_annotations(ann / "qvhighlights_val_release.jsonl")
    assert qv[0].qid == 2579 and qv[0].windows == [(82.0, 150.0)] and len(qv[0].saliency_scores[0]) == 3


# --- momentlens / charades-sta ------------------------------------------------------------------
def test_momentlens_protocol_by_hand():
    queries = [_q(0, [(0, 10)]), _q(1, [(20, 30)]), _q(2, [(0, 10), (40, 50)])]
    preds = [
        [[0, 5, 0.9], [0, 10, 0.8]],  # top-1 IoU 0.5 exactly; top-2 hits 1.0 (IoU([0,5],[0,10]) = 0.5 <= NMS 0.5)
        [[0, 10, 0.9], [19, 30, 0.5]],  # top-1 misses (0), second IoU 10/11
        [[41, 50, 0.7]],  # best of two GT windows: IoU 0.9
    ]
    r = evaluate_windows(queries, preds, MOMENTLENS)
    assert r.metrics["R1@0.5"] == pytest.approx(2 / 3)  # IoU >= 0.5 counts
    assert r.metrics["R1@0.7"] == pytest.approx(1 / 3)
    assert r.metrics["R5@0.7"] == pytest.approx(1.0)
    assert r.metrics["mIoU"] == pytest.approx((0.5 + 0.0 + 0.9) / 3)
    strict = evaluate_windows(queries, preds, CHARADES_STA)
    assert strict.metrics["R1@0.5"] == pytest.approx(1 / 3)  # IoU > 0.5 only
    assert "strict" in CHARADES_STA.describe() and "NMS 0.5" in CHARADES_STA.describe()


def test_nms_changes_top_k():
    queries = [_q(0, [(20, 30)])]
    preds = [[[0, 10, 0.9], [0, 9, 0.8], [1, 10, 0.7], [0, 11, 0.6], [1, 9, 0.5], [20, 30, 0.1]]]
    with_nms = evaluate_windows(queries, preds, MOMENTLENS)
    without = evaluate_windows(queries, preds, Protocol("raw", strict=False, nms_threshold=None))
    assert with_nms.metrics["R5@0.7"] == 1.0  # the 4 near-duplicates collapse, the GT window enters the top 5
    assert without.metrics["R5@0.7"] == 0.0


def test_missing_prediction_is_a_miss_and_per_query_export(tmp_path):
    queries = [_q(0, [(0, 10)]), _q(1, [(0, 10)])]
    r = evaluate_windows(queries, [[[0.1 + 0.2, 10, 1.0]], None])
    assert r.metrics["R1@0.3"] == 0.5 and r.num_missing == 1
    out = r.write_per_query(tmp_path / "pq.csv")
    rows = list(csv.DictReader(out.open()))
    assert [row["R1@0.5"] for row in rows] == ["1", "0"]
    assert rows[0]["top1"] == "[0.3, 10.0]" and rows[0]["iou_top1"] == "0.97"  # not 0.30000000000000004
    js = json.loads(r.write_per_query(tmp_path / "pq.json").read_text())
    assert js["protocol"]["name"] == "momentlens" and len(js["per_query"]) == 2


def test_charades_predictions_keyed_by_video_and_query():
    queries = [_q(1, [(0, 10)], vid="A", query="person sits."), _q(2, [(5, 10)], vid="B", query="person sits.")]
    preds = [{"vid": "B", "query": "person sits.", "pred_relevant_windows": [[5, 10, 1.0]]},
             {"vid": "A", "query": "person  sits.", "pred_relevant_windows": [[0, 10, 1.0]]}]
    r = evaluate_charades(queries, preds)
    assert r.metrics["R1@0.7"] == 1.0 and r.protocol.strict


# --- QVHighlights -------------------------------------------------------------------------------
def test_thresholds_match_the_protocol():
    assert MAP_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert R1_IOU_THRESHOLDS[0] == 0.3 and len(R1_IOU_THRESHOLDS) == 14


def test_interpolated_ap_by_hand():
    # hits 1,0,1 with 2 positives: precisions 1, 1/2, 2/3; envelope at the hits 1 and 2/3 -> (1 + 2/3) / 2
    assert interpolated_ap([1, 0, 1], 2) == pytest.approx(5 / 6)
    # hits 0,1,0,1 and 3 positives (one never found): (1/2 + 1/2) / 3
    assert interpolated_ap([0, 1, 0, 1], 3) == pytest.approx(1 / 3)
    assert interpolated_ap([], 2) == 0.0


def test_qvhighlights_r1_uses_list_order_and_map_uses_scores():
    gt = [{"qid": 1, "duration": 150, "relevant_windows": [[0, 10]]}]
    pred = [{"qid": 1, "pred_relevant_windows": [[20, 30, 0.1], [0, 10, 0.9]]}]
    r = evaluate_qvhighlights(gt, pred)
    assert r["brief"]["MR-full-R1@0.5"] == 0.0  # the first listed window misses
    assert r["brief"]["MR-full-mAP"] == 100.0  # ranked by score, the hit comes first
    assert r["brief"]["MR-short-mAP"] == 100.0 and r["long"] is None


def test_qvhighlights_greedy_one_to_one_matching():
    # two predictions on the same GT window: the second is a false positive; the other GT window is never found
    gt = [{"qid": 1, "duration": 150, "relevant_windows": [[0, 10], [50, 60]]}]
    pred = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.9], [0, 10, 0.8]]}]
    r = evaluate_qvhighlights(gt, pred)
    assert r["full"]["MR-mAP"]["0.5"] == 50.0  # hits 1,0 with 2 positives -> 1/2


def test_qvhighlights_highlight_metrics_by_hand():
    # 5 clips of 2 s; rater scores per relevant clip; the model ranks clip 2, 0, 1, 3, 4
    gt = [{"qid": 7, "duration": 10, "relevant_windows": [[0, 6]], "relevant_clip_ids": [0, 1, 2],
           "saliency_scores": [[4, 1, 2], [2, 2, 2], [0, 3, 1]]}]
    pred = [{"qid": 7, "pred_relevant_windows": [[0, 6, 1.0]], "pred_saliency_scores": [0.5, 0.2, 0.9, 0.1, 0.0]}]
    r = evaluate_qvhighlights(gt, pred)
    # Fair (>= 2): rater 1 positives {0, 1}: ranking 2,0,1 -> hits 0,1,1, precisions 0, 1/2, 2/3; interpolated
    # (max precision at or below each hit) 2/3, 2/3 -> AP 2/3. Rater 2 {1, 2}: hits 1,0,1 -> (1 + 2/3) / 2 = 5/6.
    # Rater 3 {0, 1}: 2/3. Mean 13/18.
    assert r["brief"]["HL-min-Fair-mAP"] == round(100 * 13 / 18, 2) == 72.22
    assert r["brief"]["HL-min-Fair-Hit1"] == 100.0  # clip 2 is Fair for rater 2
    # VeryGood (>= 4): only rater 1 has a positive (clip 0, ranked 2nd): AP 1/2; the others have none: 0
    assert r["brief"]["HL-min-VeryGood-mAP"] == round(100 * (0.5 / 3), 2)
    assert r["brief"]["HL-min-VeryGood-Hit1"] == 0.0


def test_qvhighlights_requires_matching_qids():
    gt = [{"qid": 1, "duration": 150, "relevant_windows": [[0, 10]]}]
    with pytest.raises(AnnotationError, match="different set of queries"):
        evaluate_qvhighlights(gt, [{"qid": 2, "pred_relevant_windows": [[0, 10, 1.0]]}])


MR_KEYS = ["MR-full-R1@0.3", "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5",
           "MR-full-mAP@0.75", "MR-full-mIoU", "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP"]
HIT_KEYS = ["HL-min-Fair-Hit1", "HL-min-Good-Hit1", "HL-min-VeryGood-Hit1"]
HL_MAP_KEYS = ["HL-min-Fair-mAP", "HL-min-Good-mAP", "HL-min-VeryGood-mAP"]
PARITY = [("moment_detr_val", "sample_val_preds.jsonl", "sample_val_preds_metrics_raw.json"),
          ("cg_detr_val", "best_hl_val_preds.jsonl", "best_hl_val_preds_metrics.json")]


def _parity(shared_data, folder, preds, metrics):
    gt = load_annotations(shared_data / "annotations" / "qvhighlights_val_release.jsonl")
    ref = json.loads((shared_data / "reference_eval" / folder / metrics).read_text())["brief"]
    ours = evaluate_qvhighlights(gt, read_predictions(shared_data / "reference_eval" / folder / preds))["brief"]
    return ref, ours


@pytest.mark.parametrize("folder,preds,metrics", PARITY)
def test_qvhighlights_parity_moment_retrieval_and_hit1(shared_data, folder, preds, metrics):
    """Exact (2-decimal) parity with the official metrics files on every MR key and HL-Hit1."""
    ref, ours = _parity(shared_data, folder, preds, metrics)
    for k in MR_KEYS + HIT_KEYS:
        if k in ref:
            assert ours[k] == ref[k], k
    if folder == "moment_detr_val":
        assert ours["MR-full-R1@0.5"] == 53.94 and ours["MR-full-mAP"] == 32.2
    else:
        assert ours["MR-full-R1@0.3"] == 77.94 and ours["MR-full-mIoU"] == 61.69


@pytest.mark.parametrize("folder,preds,metrics", PARITY)
def test_qvhighlights_parity_full_brief(shared_data, folder, preds, metrics):
    """Every value of the official brief, highlight mAP included, equal to two decimals."""
    ref, ours = _parity(shared_data, folder, preds, metrics)
    assert {k: ours[k] for k in ref} == ref


def test_highlight_ap_counts_tied_scores_as_one_threshold():
    from backends.evaluation.qvhighlights import _saliency_ap

    # scores 0.9 (neg), 0.5 (pos), 0.5 (neg), 0.1 (pos): thresholds 0.9 -> P 0; 0.5 -> tp 1 fp 2, P 1/3, R 1/2;
    # 0.1 -> tp 2 fp 2, P 1/2, R 1. Envelope at the two positive-adding thresholds: 1/2, 1/2 -> AP 1/2.
    pos = np.array([0, 1, 0, 1], bool)
    assert _saliency_ap(pos, np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.5)
    # order of tied clips does not matter
    assert _saliency_ap(pos[[0, 2, 1, 3]], np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.5)
    # the mean is unweighted by recall steps: ranks pos, neg, pos, pos -> envelope 1, 3/4, 3/4 -> mean 5/6
    assert _saliency_ap(np.array([1, 0, 1, 1], bool), np.array([4.0, 3, 2, 1])) == pytest.approx(5 / 6)


# --- CLI ------------------------------------------------------------------------------------------
def _run_cli(argv):
    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_evaluate_qvhighlights_json(shared_data, capsys):
    d = shared_data
    rc = _run_cli(["evaluate", str(d / "annotations" / "qvhighlights_val_release.jsonl"), "--predictions",
                   str(d / "reference_eval" / "moment_detr_val" / "sample_val_preds.jsonl"),
                   "--protocol", "qvhighlights", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["protocol"]["name"] == "qvhighlights"
    assert out["brief"]["MR-full-R1@0.5"] == 53.94 and out["brief"]["MR-full-mAP@0.75"] == 31.01
    assert out["unit"] == "percent"  # the official evaluation's numbers; the other protocols give fractions
    assert set(MR_KEYS + HIT_KEYS + HL_MAP_KEYS) <= set(out["brief"])


def test_cli_evaluate_charades_sta_with_predictions(tmp_path, capsys):
    gt = tmp_path / "sta.txt"
    gt.write_text("AAA 0.0 10.0##person sits.\nBBB 2.0 6.0##person eats.\n")
    dur = tmp_path / "durs.csv"
    dur.write_text("id,length\nAAA,8.0\nBBB,30.0\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"vid": "AAA", "query": "person sits.", "pred_relevant_windows": [[0, 8, 1.0]]}) + "\n"
                    + json.dumps({"vid": "BBB", "query": "person eats.", "pred_relevant_windows": [[2, 4, 1.0]]}) + "\n")
    rc = _run_cli(["evaluate", str(gt), "--predictions", str(pred), "--protocol", "charades-sta",
                   "--durations", str(dur), "--json", "--per-query", str(tmp_path / "pq.csv")])
    out = json.loads(capsys.readouterr().out)
    # AAA's GT is clipped to [0, 8]: exact hit; BBB: IoU 0.5, not > 0.5
    assert rc == 0 and out["R1@0.5"] == 0.5 and out["R1@0.3"] == 1.0 and out["unit"] == "fraction"
    assert out["protocol"]["strict"] is True and out["protocol"]["nms"] == 0.5
    assert (tmp_path / "pq.csv").is_file()


def test_cli_model_path_plumbing_with_fake_predictor(tmp_path, monkeypatch, capsys):
    """Unit test of the CLI plumbing only: the retrieval backend is replaced by a fake predictor."""

    gt = tmp_path / "simple.json"
    gt.write_text(json.dumps({"video": "clip.mp4", "duration": 40.0,
                              "queries": [{"query": "a dog", "gt": [0, 10]}, {"query": "a cat", "gt": [20, 30]}]}))
    seen = {}

    def fake_predict(queries, video_dir=None, encoder=None, head=None, top_k=10):
        seen.update(n=len(queries), video_dir=video_dir, encoder=encoder, top_k=top_k)
        return [{"qid": q.qid, "pred_relevant_windows": [[0, 10, 0.9], [20, 30, 0.5]]} for q in queries]

    import backends.retrieval.engine

    monkeypatch.setattr(backends.retrieval.engine, "predict_for_annotations", fake_predict)
    rc = _run_cli(["evaluate", str(gt), "--video-dir", str(tmp_path), "--encoder", "tiny", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and seen == {"n": 2, "video_dir": tmp_path, "encoder": "tiny", "top_k": 10}
    assert set(out) >= {"encoder", "num_queries", "protocol", "R1@0.3", "R1@0.5", "R1@0.7",
                        "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"}
    assert out["encoder"] == "tiny" and out["num_queries"] == 2 and out["protocol"]["name"] == "momentlens"
    assert out["R1@0.5"] == 0.5 and out["R5@0.7"] == 1.0 and 0 <= out["mIoU"] <= 1


def test_cli_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        _run_cli(["evaluate", str(tmp_path / "nope.txt"), "--predictions", str(tmp_path / "p.jsonl")])
