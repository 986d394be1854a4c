"""`hpcxlt status RUN_DIR [--json]`: how far a run is, reconciled with the Slurm queue for Slurm runs."""

from __future__ import annotations

import argparse
import json
import time

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="cells per state and stage, failed cells with their logs (Slurm runs: checked against squeue/sacct)",
        description="Count RUN_DIR's cells per state (pending, submitted, running, done, failed, cancelled) overall "
        "and per stage, and list failed cells with their error and log path. For Slurm runs the recorded states are "
        "reconciled with squeue and sacct (a job killed by scancel or a time limit shows as cancelled or failed).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object ("done": true|false for the whole grid, "counts", "stages", "failed")',
    )
    parser.add_argument("--no-queue", action="store_true", help="use the recorded states only (no squeue/sacct)")
    parser.add_argument("--cells", action="store_true", help="also list every cell with its state")
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=10.0,
        default=None,
        metavar="SECONDS",
        help="redraw in place every SECONDS (default 10) until nothing is queued or running; "
        "shows each running training cell's step, loss, dev metric and ETA",
    )
    parser.add_argument("--count", type=int, default=None, metavar="N", help="with --watch: stop after N redraws")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    if args.watch is not None:
        if args.json:
            raise UserError("--watch redraws a table in place; use --json without --watch for one JSON object")
        if args.watch <= 0 or (args.count is not None and args.count < 1):
            raise UserError("--watch needs SECONDS > 0 and --count N >= 1")
        return _watch(args)
    status = _status(args)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(report(status, args.cells), end="")
    return 0


def _status(args: argparse.Namespace) -> dict:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.manage.cost_used import cost_used
    from hpcxlt.launch.manage.progress import running_progress
    from hpcxlt.launch.manage.status import run_status
    from hpcxlt.store import RunStore

    store = RunStore(args.run_dir)  # one store: what it has read (submission records) is read once
    status = run_status(store, use_queue=not args.no_queue)
    status["progress"] = running_progress(store, status)
    executor = status["executor"] if not args.no_queue or status["executor"] != "slurm" else None
    done = {key for key, state in status["cell_states"].items() if state == "done"}
    status["cost"] = cost_used(store, store.load_plan(), store.load_config(), executor, done)
    from hpcxlt.store.rehearsal import rehearsal_path

    if rehearsal_path(store).is_file():  # a rehearsal (`submit --rehearse`): its report, written again
        from hpcxlt.launch.rehearsal import finish

        status["rehearsal"] = finish(store, use_queue=not args.no_queue)
    if not args.cells:
        status.pop("cell_states")
    return status


def _watch(args: argparse.Namespace) -> int:

    from rich.console import Console  # heavy: rich
    from rich.live import Live  # heavy: rich
    from rich.text import Text  # heavy: rich

    console = Console()
    redraws = 0
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            status = _status(args)
            stamp = time.strftime("%H:%M:%S")
            live.update(
                Text(f"{stamp}  (every {args.watch:g} s; Ctrl-C to stop)\n" + report(status, args.cells)), refresh=True
            )
            redraws += 1
            active = status["counts"]["submitted"] or status["counts"]["running"]
            if not active or (args.count is not None and redraws >= args.count):
                return 0
            try:
                time.sleep(args.watch)
            except KeyboardInterrupt:
                return 0


def report(status: dict, cells: bool) -> str:
    """The text `hpcxlt status` prints."""
    from tabulate import tabulate  # deferred: third-party, and off plan's path (the parser imports every command)

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.manage.progress import PROGRESS_HEADER, progress_rows
    from hpcxlt.launch.manage.status import REPORT_STATES

    lines: list[str] = []
    out = lines.append  # built as lines: printed once, or redrawn in place by --watch
    executor = status["executor"] or "not submitted"
    out(f"run {status['run_dir']}  experiment {status['experiment']}  executor {executor}")
    if status["queue"]["error"]:
        out(f"  (queue not checked: {status['queue']['error']})")
    shown = [s for s in REPORT_STATES if status["counts"][s] or s in ("pending", "done", "failed")]
    header = f"{'stage':<14}{'cells':>7}" + "".join(f"{s:>11}" for s in shown)
    out(header)
    out("-" * len(header))
    for stage, info in status["stages"].items():
        out(f"{stage:<14}{info['cells']:>7}" + "".join(f"{info['counts'][s]:>11}" for s in shown))
    out("-" * len(header))
    out(f"{'total':<14}{status['cells']:>7}" + "".join(f"{status['counts'][s]:>11}" for s in shown))
    waves = status.get("waves")
    if waves:
        feeder = f"; feeder job {waves['feeder']} ({waves['feeder_state']}) submits the next" if waves["feeder"] else ""
        out(
            f"waves: {waves['submitted']} submitted (site max_queued_jobs); {waves['waiting_jobs']} job(s) were "
            f"left for later waves{feeder}"
        )
    agg = status["aggregate"]
    if agg.get("job_id") or agg.get("state") != "pending":
        out(
            f"aggregation: {agg.get('state')}"
            + (f" (job {agg['job_id']}, log {agg.get('log')})" if agg.get("job_id") else "")
            + (f" ({agg['tables']})" if agg.get("tables") else "")
            + (f"; {agg['note']}" if agg.get("note") else "")
        )
    if status.get("cost"):
        out("")
        out(
            f"{'cost':<14}{'used h':>9}{'used GPU-h':>12}{'plan GPU-h':>12}{'left GPU-h':>12}  (plan: hpcxlt plan's estimate)"
        )
        for stage, c in status["cost"].items():
            gpu = "-" if c["used_gpu_hours"] is None else f"{c['used_gpu_hours']:.2f}"
            plan_h = "-" if c["estimate_gpu_hours"] is None else f"{c['estimate_gpu_hours']:.2f}"
            left = "-" if c["remaining_gpu_hours"] is None else f"{c['remaining_gpu_hours']:.2f}"
            out(f"{stage:<14}{c['used_hours']:>9.2f}{gpu:>12}{plan_h:>12}{left:>12}")
    if status.get("progress"):
        out("")
        out(tabulate(progress_rows(status["progress"]), headers=PROGRESS_HEADER, disable_numparse=True))
    if status["failed"]:
        out(f"\n{len(status['failed'])} failed cell(s):")
        for cell in status["failed"]:
            out(f"  {cell['key']}: {cell['error'] or 'no error recorded'}")
            out(f"    log: {cell['log'] or '-'}")
    working = status.get("working")
    if working:
        out(f"\nat work now: `hpcxlt {working.get('command')}` (host {working.get('host')}, pid {working.get('pid')})")
    if status["done"]:
        if agg.get("state") == "done" and not agg.get("note"):
            out("\nall cells done; the tables are written")
        elif agg.get("state") in ("submitted", "running"):
            out("\nall cells done; the aggregation job is on its way")
        else:
            out(f"\nall cells done: `hpcxlt aggregate {status['run_dir']}` writes the tables")
    elif working and status["executor"] == "local":
        pass  # a local run is still working through the grid: nothing to resume yet
    elif status["counts"]["failed"] or status["counts"]["cancelled"] or status["counts"]["pending"]:
        out(f"\n`hpcxlt resume {status['run_dir']}` resubmits what is neither done nor queued")
    if status.get("rehearsal"):
        from hpcxlt.launch.rehearsal import render  # deferred: this command's code loads when it runs

        out("")
        out(render(status["rehearsal"], status["run_dir"]).rstrip("\n"))
    if cells:
        for key, state in status["cell_states"].items():
            out(f"{state:<10} {key}")
    return "\n".join(lines) + "\n"
