"""`hpcxlt submit CONFIG --run-dir DIR [--site SITE.yaml | --local] [--dry-run]`: start (or continue) a grid."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError, add_override_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "submit",
        help="run an experiment's grid locally (default) or submit it to Slurm as job arrays",
        description="Plan CONFIG into RUN_DIR and run it: in this process, in dependency order (--local, the "
        "default), or on Slurm (--site SITE.yaml) as job arrays with element-wise dependencies (a target run "
        "starts as soon as its own intermediate run is done). Cells already done in RUN_DIR are never rerun; "
        "a RUN_DIR holding a different experiment is refused. --dry-run prints what would run (for Slurm: the "
        "arrays, their dependencies and the exact sbatch scripts) and submits nothing.",
    )
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("--run-dir", required=True, metavar="DIR", help="run directory (created if missing)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--site", metavar="SITE.yaml", help="Slurm site profile (e.g. slurm/sites/local.yaml)")
    where.add_argument("--local", action="store_true", help="run in this process (the default)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run; write and submit nothing")
    add_override_argument(parser)
    parser.add_argument(
        "--no-aggregate",
        action="store_true",
        help="Slurm: no final aggregation job (run `hpcxlt aggregate RUN_DIR` yourself)",
    )
    parser.add_argument(
        "--reuse-from",
        metavar="OTHER_RUN",
        help="link the done cells of another run directory whose fingerprints equal this plan's "
        "(models, records, predictions) instead of training and evaluating them again",
    )
    parser.add_argument("--no-progress", action="store_true", help="local: no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.grid.experiment import load_experiment
    from hpcxlt.grid.plan import plan
    from hpcxlt.store import RunDirError, RunStore

    cfg = load_experiment(args.config, args.override)
    grid = plan(cfg)
    site = None
    site_raw: dict = {}
    if args.site:
        from hpcxlt.config.load import read_yaml
        from hpcxlt.launch.site.profile import SiteError, parse_site

        site_raw = read_yaml(args.site, "site profile", SiteError)
        site = parse_site(site_raw, args.site)  # validated before anything is written or submitted
        # heavy: submitit (via hpcxlt.launch.slurm.shared_array)
        from hpcxlt.launch.slurm.submission import SubmitError, check_batch_path

        try:
            check_batch_path(args.run_dir)
        except SubmitError as err:
            raise UserError(str(err)) from None
    from hpcxlt.launch.submit_checks import SubmitCheckError, check_before_submit

    try:
        check_before_submit(cfg, site, str(args.config))  # submit, resume and the feeder job alike
    except SubmitCheckError as err:
        raise UserError(str(err)) from None
    store = RunStore(args.run_dir)
    try:
        added = store.growth(cfg, grid) if store.config_path.exists() else None  # refuses a non-additive change
        if not args.dry_run:
            store.initialize(cfg, grid)
    except RunDirError as err:
        raise UserError(str(err)) from None
    if added:
        print(
            f"{'would grow' if args.dry_run else 'grew'} {store.root} by {len(added)} cell(s); its done cells are kept"
        )
    if args.reuse_from:
        from hpcxlt.launch.manage.reuse import link_done_cells

        if args.dry_run:
            from hpcxlt.launch.manage.reuse import reusable

            try:
                would = [cell.key for cell, _ in reusable(store, grid, RunStore(args.reuse_from))]
            except RunDirError as err:
                raise UserError(str(err)) from None
            print(f"would reuse {len(would)} done cell(s) of {args.reuse_from} whose fingerprints equal this plan's")
            store = store.assuming_done(would)  # the dry run below counts only what would still run
        else:
            try:
                linked = link_done_cells(store, grid, RunStore(args.reuse_from))
            except RunDirError as err:
                raise UserError(str(err)) from None
            print(f"reused {len(linked)} done cell(s) from {args.reuse_from} (equal fingerprints)")
    if site is not None:
        from hpcxlt.launch.slurm.queue import QueueError
        from hpcxlt.launch.slurm.submission import SubmitError  # heavy: submitit (via hpcxlt.launch.slurm.shared_array)
        from hpcxlt.launch.submit import launch_slurm

        try:
            result = launch_slurm(
                store, grid, cfg.name, site, site_raw, dry_run=args.dry_run, aggregate=not args.no_aggregate
            )
        except (SubmitError, QueueError) as err:
            raise UserError(str(err)) from None
        if not args.dry_run:
            _print_slurm(result, store.root)
    else:
        from hpcxlt.launch.submit import launch_local

        result = launch_local(store, grid, dry_run=args.dry_run, progress=not args.no_progress)
        if not args.dry_run and result.exit_code == 0:
            print(f"ran {result.jobs} jobs ({result.cells} cells) locally; results in {store.root}")
    if args.json:
        print(json.dumps(result.summary(dry_run=args.dry_run)))
    return result.exit_code


def _print_slurm(result, root) -> None:
    if not result.submissions:
        print("nothing to submit: every cell is done or still queued")
        return
    if result.cancelled:
        print(f"cancelled {len(result.cancelled)} queued job(s) that waited for resubmitted work")
    arrays = sum(1 for s in result.submissions if s["tasks"] > 1)
    print(
        f"submitted {result.jobs} jobs ({result.cells} cells) in {len(result.submissions)} sbatch submissions "
        f"({arrays} arrays)" + (" + the aggregation job" if result.aggregate else "")
    )
    if result.deferred:
        print(
            f"{result.deferred} more job(s) go in later waves (the site's max_queued_jobs); feeder job "
            f"{result.feeder} submits the next one when this one has ended"
        )
    for row in result.submissions:
        ids = row["job_ids"] or []
        shown = ids[0].split("_")[0] if len(ids) > 1 else (ids[0] if ids else "-")
        print(f"  {row['name']:<18}{row['tasks']:>5} task(s)  job {shown:<10} {row['dependency'] or ''}")
    print(f"follow with `hpcxlt status {root}`")
