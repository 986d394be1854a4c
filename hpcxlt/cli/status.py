"""`hpcxlt status RUN_DIR [--json]`: how far a run is, reconciled with the Slurm queue for Slurm runs."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="cells per state and stage, failed cells with their logs (Slurm runs: checked against squeue/sacct)",
        description="Count RUN_DIR's cells per state (pending, submitted, running, done, failed, cancelled) overall "
        "and per stage, and list failed cells with their error and log path. For Slurm runs the recorded states are "
        "reconciled with squeue and sacct (a job killed by scancel or a time limit shows as cancelled or failed).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object ("done": true|false for the whole grid, "counts", "stages", "failed")')
    parser.add_argument("--no-queue", action="store_true", help="use the recorded states only (no squeue/sacct)")
    parser.add_argument("--cells", action="store_true", help="also list every cell with its state")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hpcxlt.launch.report import REPORT_STATES, run_status

    status = run_status(args.run_dir, use_queue=not args.no_queue)
    if not args.cells:
        status.pop("cell_states")
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    executor = status["executor"] or "not submitted"
    print(f"run {status['run_dir']}  experiment {status['experiment']}  executor {executor}")
    if status["queue"]["error"]:
        print(f"  (queue not checked: {status['queue']['error']})")
    shown = [s for s in REPORT_STATES if status["counts"][s] or s in ("pending", "done", "failed")]
    header = f"{'stage':<14}{'cells':>7}" + "".join(f"{s:>11}" for s in shown)
    print(header)
    print("-" * len(header))
    for stage, info in status["stages"].items():
        print(f"{stage:<14}{info['cells']:>7}" + "".join(f"{info['counts'][s]:>11}" for s in shown))
    print("-" * len(header))
    print(f"{'total':<14}{status['cells']:>7}" + "".join(f"{status['counts'][s]:>11}" for s in shown))
    waves = status.get("waves")
    if waves:
        feeder = f"; feeder job {waves['feeder']} ({waves['feeder_state']}) submits the next" if waves["feeder"] else ""
        print(f"waves: {waves['submitted']} submitted (site max_queued_jobs); {waves['waiting_jobs']} job(s) were "
              f"left for later waves{feeder}")
    agg = status["aggregate"]
    if agg.get("job_id") or agg.get("state") != "pending":
        print(f"aggregation: {agg.get('state')}" + (f" (job {agg['job_id']}, log {agg.get('log')})" if agg.get("job_id") else ""))
    if status["failed"]:
        print(f"\n{len(status['failed'])} failed cell(s):")
        for cell in status["failed"]:
            print(f"  {cell['key']}: {cell['error'] or 'no error recorded'}")
            print(f"    log: {cell['log'] or '-'}")
    if status["done"]:
        print("\nall cells done")
    elif status["counts"]["failed"] or status["counts"]["cancelled"] or status["counts"]["pending"]:
        print(f"\n`hpcxlt resume {status['run_dir']}` resubmits what is neither done nor queued")
    if args.cells:
        for key, state in status["cell_states"].items():
            print(f"{state:<10} {key}")
    return 0
