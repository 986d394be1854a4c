"""`hpcxlt redo RUN CELL_OR_PATTERN... [--dry-run]`: run done cells again, and everything downstream of them."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError, main


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "redo",
        help="run done cells again (and every cell downstream of them), keeping what they had",
        description="Invalidate the cells the patterns name (keys such as target.en.xnli.s1, or shell patterns "
        "such as 'eval.en.xnli.s2.*') and every cell downstream of them, then resume the run. Nothing is deleted: "
        "each cell's folder moves to cells/.redo-<time>/, an evaluation's records to results/.redo-<time>/.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("patterns", nargs="+", metavar="CELL_OR_PATTERN", help="cell keys or shell-style patterns")
    parser.add_argument("--dry-run", action="store_true", help="list what would be redone; change nothing")
    parser.add_argument("--no-submit", action="store_true", help="set the cells aside but do not resume")
    parser.add_argument("--site", metavar="SITE.yaml", help="resume with this site profile instead of the recorded one")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.manage.redo import RedoError, selected, set_aside, with_downstream
    from hpcxlt.launch.record import read_launch
    from hpcxlt.store import RunStore

    store = RunStore(args.run_dir)
    plan = store.load_plan()
    try:
        named = selected(plan, args.patterns)
    except RedoError as err:
        raise UserError(str(err)) from None
    keys = with_downstream(plan, named)
    summary = {
        "named": len(named),
        "cells": len(keys),
        "done_now": sum(store.is_done(k) for k in keys),
        "dry_run": args.dry_run,
        "keys": keys,
    }
    print(
        f"{'would redo' if args.dry_run else 'redoing'} {len(keys)} cell(s): {len(named)} named, "
        f"{len(keys) - len(named)} downstream of them ({summary['done_now']} done now)"
    )
    for key in keys[:20]:
        print(f"  {key}{'' if key in named else '  (downstream)'}")
    if len(keys) > 20:
        print(f"  ... and {len(keys) - 20} more")
    if args.dry_run:
        if args.json:
            print(json.dumps(summary))
        return 0
    launch = read_launch(store) or {}
    with store.lock("redo"):
        if launch.get("executor") == "slurm":
            from hpcxlt.launch.slurm import queue

            alive = queue.alive_jobs()
            busy = [k for k in keys if store.state(k).get("job_id") in alive]
            if busy:
                raise UserError(
                    f"{len(busy)} of these cells are queued or running now ({', '.join(busy[:3])}): "
                    f"`hpcxlt cancel {store.root}` first, or redo other cells"
                )
        kept = set_aside(store, plan, keys)
    print(f"their earlier work is kept in {kept}")
    if args.json and args.no_submit:
        print(json.dumps({**summary, "kept": str(kept)}))
    if args.no_submit:
        print(f"`hpcxlt resume {store.root}` runs them again")
        return 0
    return main(["resume", str(store.root), *(["--site", args.site] if args.site else [])])
