"""`hpcxlt resume RUN_DIR`: resubmit exactly the cells that are neither done nor alive in the queue."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "resume",
        help="resubmit what is neither done nor queued (Slurm), or finish a local run in the foreground",
        description="Continue RUN_DIR with the executor it was submitted with: on Slurm, resubmit the jobs whose "
        "cells are neither done nor alive in the queue, waiting for still-queued upstream jobs; locally, run the "
        "unfinished jobs here. Running it twice submits nothing the second time.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--site", metavar="SITE.yaml", help="resubmit with this site profile instead of the recorded one"
    )
    where.add_argument("--local", action="store_true", help="finish the run in this process instead")
    parser.add_argument("--dry-run", action="store_true", help="print what would be resubmitted; submit nothing")
    parser.add_argument(
        "--next-wave",
        action="store_true",
        help="submit only jobs never submitted before (what a wave's feeder job runs; see max_queued_jobs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="local: no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.record import read_launch
    from hpcxlt.store import RunStore

    store = RunStore(args.run_dir)
    cfg = store.load_config()
    grid = store.load_plan()
    launch = read_launch(store)
    executor = "local" if args.local else "slurm" if args.site else (launch or {}).get("executor")
    if executor is None:
        raise UserError(
            f"{store.root} was never submitted; start it with `hpcxlt submit CONFIG --run-dir {args.run_dir}`"
        )
    if executor == "slurm":
        import yaml

        from hpcxlt.launch.site.profile import load_site
        from hpcxlt.launch.slurm.queue import QueueError
        from hpcxlt.launch.slurm.submission import SubmitError  # heavy: submitit (via hpcxlt.launch.slurm.shared_array)
        from hpcxlt.launch.submit import launch_slurm, site_from_record
        from hpcxlt.launch.submit_checks import SubmitCheckError

        if args.site:
            site, raw = load_site(args.site), yaml.safe_load(open(args.site, encoding="utf-8"))
        else:
            record = (launch or {}).get("site")
            if not record:
                raise UserError(f"{store.root} records no site profile: resume it with --site SITE.yaml")
            site, raw = site_from_record(record), record["data"]
        try:
            result = launch_slurm(
                store,
                grid,
                cfg.name,
                site,
                raw,
                dry_run=args.dry_run,
                aggregate=(launch or {}).get("aggregate", True),
                command="resume",
                next_wave=args.next_wave,
            )
        except (SubmitError, SubmitCheckError, QueueError) as err:
            raise UserError(str(err)) from None
        if not args.dry_run:
            if result.jobs or result.aggregate:
                agg = " + the aggregation job" if result.aggregate else ""
                print(
                    f"resubmitted {result.cells} cells in {result.jobs} jobs{agg} "
                    f"({len(result.submissions)} sbatch submissions)"
                )
                if result.deferred:
                    print(f"{result.deferred} job(s) wait for the next wave; feeder job {result.feeder} submits it")
                if result.cancelled:
                    print(f"cancelled {len(result.cancelled)} queued job(s) that waited for resubmitted work first")
            else:
                print("nothing to resume: every cell is done or still queued")
    else:
        from hpcxlt.launch.submit import launch_local
        from hpcxlt.launch.submit_checks import SubmitCheckError

        try:
            result = launch_local(store, grid, dry_run=args.dry_run, progress=not args.no_progress, command="resume")
        except SubmitCheckError as err:
            raise UserError(str(err)) from None
        if not args.dry_run:
            if result.jobs:
                print(f"ran {result.jobs} jobs ({result.cells} cells) locally")
            else:
                print("nothing to resume: every cell is done")
    if args.json:
        print(json.dumps(result.summary(dry_run=args.dry_run)))
    return result.exit_code
