"""Sub-commands `evaluate` (score predictions, or run our model, under a named protocol) and `baseline`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backends.cli.common import (
    emit_json,
    int_range,
    output_file,
    replaced,
    say_written,
    seed_value,
    unit_fraction,
    written_whole,
)
from backends.core.errors import AnnotationError, MomentLensError
from backends.core.paths import shared_data_dir
from backends.evaluation.annotations import (
    detect_format,
    load_annotations,
    read_predictions,
)
from backends.evaluation.charades import CHARADES_STA, default_duration_files
from backends.evaluation.metrics import (
    MOMENTLENS,
    Protocol,
    align_predictions,
    evaluate_windows,
    metric_names,
)

PROTOCOLS = ("qvhighlights", "charades-sta", "momentlens")


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="score moment-retrieval predictions (or run the model) under a standard protocol")
    ev.add_argument("ground_truth", type=Path, help="annotations: Charades-STA .txt, QVHighlights .jsonl, or .json")
    ev.add_argument("--predictions", type=Path, help="predictions jsonl (qid or vid+query, pred_relevant_windows "
                    "[[start, end, score], ...] in rank order, optional pred_saliency_scores); omit to run the model")
    ev.add_argument("--protocol", choices=PROTOCOLS, help="default: qvhighlights for .jsonl ground truth with "
                    "--predictions, charades-sta for .txt, momentlens otherwise")
    ev.add_argument("--durations", type=Path, nargs="+", metavar="CSV",
                    help="Charades_v1_{train,test}.csv (default: those in the shared data folder, for Charades-STA)")
    ev.add_argument("--nms", type=unit_fraction, default=None, help="NMS threshold of the momentlens protocol (default 0.5)")
    ev.add_argument("--per-query", type=per_query_file, metavar="OUT",
                    help="write per-query results to OUT.csv or OUT.json")
    ev.add_argument("--video-dir", type=Path, help="model run: folder holding the annotated videos (default: the annotation file's folder)")
    ev.add_argument("--encoder", default=None, help="model run: encoder name")
    ev.add_argument("--head", type=Path, default=None, help="model run: trained head checkpoint")
    ev.add_argument("--json", action="store_true",
                    help='print the result as JSON; its "unit" says how metrics read: "fraction" (0 to 1) for the '
                         'momentlens and charades-sta protocols, "percent" for qvhighlights (as its official '
                         'evaluation prints them, comparable to the papers\' tables)')
    ev.set_defaults(func=cmd_evaluate)

    bl = sub.add_parser("baseline", help="blind baselines (Otani et al. 2020): uniform, prior, prior-verb")
    bl.add_argument("name", choices=("uniform", "prior", "prior-verb"))
    bl.add_argument("--train", type=Path, required=True, help="training annotations (for the priors)")
    bl.add_argument("--test", type=Path, required=True, help="test annotations")
    bl.add_argument("--durations", type=Path, nargs="+", metavar="CSV",
                    help="Charades_v1_{train,test}.csv (default: those in the shared data folder)")
    bl.add_argument("--seed", type=seed_value, default=0, help="random seed (default 0)")
    bl.add_argument("--runs", type=int_range(1, 10_000), default=10, help="average over this many runs")
    bl.add_argument("--json", action="store_true", help="print the result as JSON")
    bl.set_defaults(func=cmd_baseline)


def _durations_for(paths: list[Path] | None, *annotation_files: Path) -> list[Path] | None:
    """Explicit --durations, else the shared Charades csvs when an annotation file is Charades-STA txt."""
    if paths:
        return list(paths)
    if any(p.suffix.lower() == ".txt" for p in annotation_files):
        return default_duration_files(shared_data_dir()) or None
    return None


def _default_protocol(gt: Path, has_predictions: bool) -> str:
    kind = detect_format(gt)
    if kind == "qvhighlights" and has_predictions:
        return "qvhighlights"
    if kind == "charades-sta":
        return "charades-sta"
    return "momentlens"


def _emit(obj: Any) -> None:
    emit_json(obj)


def per_query_file(text: str) -> Path:
    """argparse type of --per-query: a .csv or .json file to write (the suffix picks the format)."""
    p = output_file(text)
    if p.suffix.lower() not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"{text} must end in .csv or .json (the suffix picks the format)")
    return p


def _check_annotation_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise AnnotationError(f"{path} is a folder; give the {what} itself (.txt, .jsonl or .json).")
    if not path.is_file():
        raise AnnotationError(f"{what} {path} does not exist.")


def _check_options(args: argparse.Namespace, protocol: str) -> None:
    """Refuse, before any work, an option that the chosen mode would silently ignore."""
    if args.predictions is not None:
        model_opts = [flag for flag, v in (("--encoder", args.encoder), ("--head", args.head),
                                           ("--video-dir", args.video_dir)) if v is not None]
        if model_opts:
            raise MomentLensError(f"{', '.join(model_opts)} choose the model that runs, but --predictions scores "
                                  "predictions made elsewhere: drop one or the other.")
        if not args.predictions.is_file():
            raise AnnotationError(f"predictions file {args.predictions} does not exist.")
    if protocol == "qvhighlights":
        ignored = [flag for flag, v in (("--per-query", args.per_query), ("--nms", args.nms),
                                        ("--durations", args.durations)) if v is not None]
        if ignored:
            raise MomentLensError(f"{', '.join(ignored)} apply to the momentlens and charades-sta protocols only, "
                                  "not to qvhighlights: drop them or pass --protocol momentlens.")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.encoders import default_encoder_name

    _check_annotation_file(args.ground_truth, "ground-truth file")
    name = args.protocol or _default_protocol(args.ground_truth, args.predictions is not None)
    _check_options(args, name)
    if name == "qvhighlights":
        if args.predictions is None:
            raise MomentLensError("the qvhighlights protocol needs --predictions (a QVHighlights-format jsonl).")
        return _evaluate_qvhighlights(args)
    durations = _durations_for(args.durations, args.ground_truth) if name == "charades-sta" or args.durations else None
    queries = load_annotations(args.ground_truth, durations=durations)
    protocol: Protocol = CHARADES_STA if name == "charades-sta" else MOMENTLENS
    if args.nms is not None:
        protocol = Protocol(protocol.name, protocol.strict, args.nms)
    if args.predictions is not None:
        result = evaluate_windows(queries, align_predictions(queries, read_predictions(args.predictions)), protocol)
        if queries and result.num_missing == result.num_queries:  # scoring 0.00 would read as a terrible model
            raise MomentLensError(f"none of the {len(queries)} queries of {args.ground_truth.name} has a prediction in "
                                  f"{args.predictions.name}: their query ids differ; are both files from the same "
                                  "dataset and split?")
        encoder = None
    else:
        preds = _run_model(queries, args)
        result = evaluate_windows(queries, preds, protocol)

        encoder = args.encoder or default_encoder_name()  # the model that ran, default resolved
    again = ""
    if args.per_query:
        again = replaced(args.per_query)
        with written_whole(args.per_query) as tmp:
            result.write_per_query(tmp, fmt=args.per_query.suffix)
    if args.json:
        out = {"encoder": encoder, "num_queries": result.num_queries, "protocol": protocol.to_dict(), "unit": "fraction",
               **{k: result.metrics[k] for k in metric_names(protocol)},
               "num_missing_predictions": result.num_missing}
        if durations:
            out["durations"] = [str(p) for p in durations]
        _emit(out)
        say_written(f"wrote per-query results to {args.per_query}{again}" if again else None, as_json=True)
    else:
        print(f"protocol {protocol.describe()}")
        print(f"queries {result.num_queries} (without prediction: {result.num_missing}); metrics in percent")
        for k in metric_names(protocol):
            print(f"{k:8s} {_pct(result.metrics[k])}")
        if args.per_query:
            print(f"wrote per-query results to {args.per_query}{again}")
    return 0


def _run_model(queries: Sequence[Any], args: argparse.Namespace) -> list[dict]:
    """Our model's predictions for the annotated queries."""
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.retrieval.engine import predict_for_annotations

    preds = predict_for_annotations(
        queries, video_dir=args.video_dir or Path(args.ground_truth).resolve().parent,
        encoder=args.encoder, head=args.head, top_k=10
    )
    if len(preds) != len(queries):
        raise MomentLensError(f"the model returned {len(preds)} predictions for {len(queries)} queries.")
    return list(preds)


def _evaluate_qvhighlights(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.evaluation.qvhighlights import evaluate_qvhighlights

    result = evaluate_qvhighlights(load_annotations(args.ground_truth), read_predictions(args.predictions))
    if args.json:
        _emit({**result, "unit": "percent"})
    else:
        print(f"protocol {result['protocol']['description']}")
        print(f"queries {result['num_queries']}")
        for k, v in result["brief"].items():
            print(f"{k:22s} {v:.2f}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    # deferred: these import torch, scipy or plotly; `momentlens --help` must start in about 0.5 s
    from backends.evaluation.baselines import run_baseline

    for p in (args.train, args.test):
        _check_annotation_file(p, "annotation file")
    durations = _durations_for(args.durations, args.train, args.test)
    train = load_annotations(args.train, durations=durations)
    test = load_annotations(args.test, durations=durations)
    result = run_baseline(args.name, train, test, seed=args.seed, runs=args.runs)
    if args.json:
        _emit(result.to_dict())
    else:
        print(f"baseline {result.name}, seed {result.seed}, mean of {result.runs} runs, {result.num_queries} queries")
        print(f"protocol {result.protocol.describe()}")
        for k, v in result.mean.items():
            print(f"{k:8s} {_pct(v)} +- {_pct(result.std[k])}")
    return 0
