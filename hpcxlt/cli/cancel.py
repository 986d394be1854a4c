"""`hpcxlt cancel RUN_DIR`: cancel a run's queued and running Slurm jobs (or stop its local process)."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cancel",
        help="scancel every queued or running job of a run (local runs: stop the running process)",
        description="Cancel RUN_DIR's jobs that are still alive in the Slurm queue (training jobs get no chance to "
        "checkpoint: use `scancel --signal=USR2` for that), or send SIGTERM to a local run's process (it saves a "
        "checkpoint at the next step and stops). Done cells are untouched; `hpcxlt resume` continues later.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.manage.cancel import cancel_run
    from hpcxlt.launch.slurm.queue import QueueError

    try:
        result = cancel_run(args.run_dir)
    except QueueError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps(result))
    elif not result["jobs"]:
        print("nothing to cancel: no job of this run is queued or running")
    elif result["executor"] == "slurm":
        print(f"cancelled {len(result['jobs'])} Slurm job(s) covering {result['cells']} unfinished cell(s)")
    else:
        print(f"sent SIGTERM to local process(es) {', '.join(result['jobs'])} ({result['cells']} running cell(s))")
    return 0
