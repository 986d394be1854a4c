"""`hpcxlt score PRED_DIR --labels LABEL_DIR`: XTREME-R scores of a submission folder, like the official scorer."""

from __future__ import annotations

import argparse
import json
import sys

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="score a prediction folder in the official XTREME-R layout against a label folder",
        description="Score PRED_DIR (one folder per task with test-<lang>.<tsv|json|jsonl>) against LABEL_DIR "
        "in the same layout, with the metrics of the official scorer, and print per-language, per-task, "
        "per-category and overall XTREME-R scores (points, 0-100).",
    )
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="prediction folder (official submission layout)")
    parser.add_argument("--labels", required=True, metavar="LABEL_DIR", help="label folder in the same layout")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument(
        "--qa-convention",
        choices=("em_f1", "f1"),
        default="em_f1",
        help="QA task score: (avg EM + avg F1)/2 as in the official scorer (default), or avg F1",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="average over the tasks present when some are missing (the result is marked partial)",
    )
    parser.set_defaults(func=run)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from tabulate import tabulate  # deferred: third-party, and off plan's path (the parser imports every command)

    from hpcxlt.evaluate.scoring import score_submission
    from hpcxlt.evaluate.submission import SubmissionError

    try:
        result = score_submission(args.pred_dir, args.labels, qa_convention=args.qa_convention, partial=args.partial)
    except SubmissionError as err:
        raise UserError(str(err)) from None
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0

    for name, task in result.tasks.items():
        metric_names = list(task.averages)
        rows = [[lang] + [_fmt(m[k]) for k in metric_names] for lang, m in task.languages.items()]
        rows.append(["avg"] + [_fmt(task.averages[k]) for k in metric_names])
        print(f"== {name} ({task.category}): {_fmt(task.score)}")
        print(tabulate(rows, headers=["lang"] + metric_names, disable_numparse=True))
        print()
    print(
        tabulate(
            [[name, task.category, _fmt(task.score)] for name, task in result.tasks.items()],
            headers=["task", "category", "score"],
            disable_numparse=True,
        )
    )
    print()
    print(
        tabulate(
            [[name, _fmt(value)] for name, value in result.categories.items()],
            headers=["category", "score"],
            disable_numparse=True,
        )
    )
    print()
    label = "XTREME-R (partial)" if result.partial else "XTREME-R"
    qa = "QA = (EM+F1)/2" if result.qa_convention == "em_f1" else "QA = F1"
    missing = "" if result.xtreme_r is not None else " (not all ten tasks present; --partial averages the rest)"
    print(f"{label}: {_fmt(result.xtreme_r)}  [{qa}]{missing}")
    return 0
