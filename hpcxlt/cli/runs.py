"""`hpcxlt runs DIR...` (run directories at a glance) and `hpcxlt compare RUN_A RUN_B` (what differs)."""

from __future__ import annotations

import argparse
import json
import time

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(
        "runs",
        help="list run directories: experiment, cells done/total, last activity",
        description="List the run directories given, or the ones right below each folder given.",
    )
    runs.add_argument("paths", nargs="+", metavar="DIR", help="run directories, or folders holding them")
    runs.add_argument("--json", action="store_true", help="print one JSON object")
    runs.set_defaults(func=run_runs)
    compare = sub.add_parser(
        "compare",
        help="show the config and task-score differences of two runs",
        description="Config keys that differ between two run directories, and their task "
        "scores side by side (from each run's aggregated tables).",
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(func=run_compare)


def run_runs(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from tabulate import tabulate  # deferred: third-party, and off plan's path (the parser imports every command)

    from hpcxlt.launch.manage.runs import find_runs, summary

    stores = find_runs(args.paths)
    if not stores:
        raise UserError(f"no run directory (a folder with config.yaml and plan.json) in {', '.join(args.paths)}")
    rows = [summary(store) for store in stores]
    if args.json:
        print(json.dumps({"runs": rows}, indent=2))
        return 0
    print(
        tabulate(
            [
                [
                    r["run_dir"],
                    r["experiment"],
                    f"{r['done']}/{r['cells']}",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_activity"])),
                    "yes" if r["tables"] else "",
                ]
                for r in rows
            ],
            headers=["run", "experiment", "cells done", "last activity", "tables"],
        )
    )
    return 0


def run_compare(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from tabulate import tabulate  # deferred: third-party, and off plan's path (the parser imports every command)

    from hpcxlt.launch.manage.runs import config_diff, score_diff
    from hpcxlt.store import RunStore

    a, b = RunStore(args.run_a), RunStore(args.run_b)
    config = config_diff(a, b)
    scores = score_diff(a, b)
    if args.json:
        print(
            json.dumps(
                {
                    "config": [{"key": k, "a": x, "b": y} for k, x, y in config],
                    "scores": [
                        {
                            "arm": arm,
                            "target": t,
                            "a": x,
                            "b": y,
                            "b_minus_a": None if x is None or y is None else round(y - x, 4),
                        }
                        for arm, t, x, y in scores
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"A = {a.root}\nB = {b.root}\n")
    print(
        tabulate([[k, json.dumps(x), json.dumps(y)] for k, x, y in config], headers=["config key", "A", "B"])
        if config
        else "the configs are equal"
    )
    print()
    if scores:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(
            tabulate(
                [[arm, t, fmt(x), fmt(y), fmt(None if x is None or y is None else y - x)] for arm, t, x, y in scores],
                headers=["arm", "target", "A", "B", "B - A"],
                disable_numparse=True,
            )
        )
    else:
        print("no task scores to compare: `hpcxlt aggregate RUN` writes them")
    return 0
