"""`hpcxlt submit CONFIG --run-dir DIR [--site SITE.yaml | --local] [--dry-run]`: start (or continue) a grid."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError, add_override_argument

SUFFIX = ".rehearsal"  # hpcxlt.launch.rehearsal.SUFFIX: the parser imports every command module, so not from there


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
    rehearse = parser.add_argument_group(
        "rehearsal", "every job of the grid on the same site, each cut to a minimum, into a run directory of its own"
    )
    rehearse.add_argument(
        "--rehearse",
        action="store_true",
        help="rehearse the grid (docs/rehearsal.md): a few steps per training cell (one of each training stage "
        "preempted, requeued and resumed once), a few examples per evaluation, the aggregation; then a verdict "
        "per stage, the rates measured here and the real run's GPU-hours from them (REHEARSAL_DIR/rehearsal.json)",
    )
    rehearse.add_argument(
        "--rehearsal-dir",
        metavar="REHEARSAL_DIR",
        help=f"the rehearsal's run directory (default: RUN_DIR{SUFFIX}); never the real run's",
    )
    rehearse.add_argument("--steps", type=int, default=2, metavar="N", help="optimizer steps per training cell (2)")
    rehearse.add_argument(
        "--examples", type=int, default=16, metavar="N", help="evaluation examples per language and split (16)"
    )
    rehearse.add_argument(
        "--wait",
        action="store_true",
        help="Slurm: wait for the rehearsal's jobs to end, then print its report (else the aggregation job "
        "writes it and `hpcxlt status REHEARSAL_DIR` prints it)",
    )
    parser.add_argument("--no-progress", action="store_true", help="local: no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.grid.experiment import load_experiment
    from hpcxlt.grid.plan import plan
    from hpcxlt.store import RunDirError, RunStore

    rehearsal = None
    if args.rehearse:
        rehearsal, args = _rehearsal(args)
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
            if rehearsal is not None:
                rehearsal(store, cfg, grid, site)
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
            if rehearsal is not None:
                result.exit_code = result.exit_code or _rehearsal_end(store, wait=args.wait)
    else:
        from hpcxlt.launch.submit import launch_local

        result = launch_local(store, grid, dry_run=args.dry_run, progress=not args.no_progress)
        if not args.dry_run and result.exit_code == 0:
            print(f"ran {result.jobs} jobs ({result.cells} cells) locally; results in {store.root}")
        if not args.dry_run and rehearsal is not None and result.exit_code != 130:
            from hpcxlt.launch.rehearsal import aggregate_here

            aggregate_here(store)  # the aggregation job of a Slurm run, here
            result.exit_code = _rehearsal_end(store, wait=True) or result.exit_code
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


def _rehearsal(args: argparse.Namespace):
    """--rehearse: the cuts as -o overrides, the rehearsal's own run directory; returns the function that
    records the rehearsal's settings once its run directory is initialised, and the arguments to go on with."""
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.grid.experiment import load_experiment
    from hpcxlt.grid.plan import plan
    from hpcxlt.launch import rehearsal
    from hpcxlt.store import RunDirError
    from hpcxlt.store.rehearsal import read_rehearsal, write_settings

    if args.reuse_from:
        raise UserError("--rehearse runs every cell again: it takes no --reuse-from")
    if args.no_aggregate:
        raise UserError("--rehearse rehearses the aggregation job too: it takes no --no-aggregate")
    target = args.rehearsal_dir or str(rehearsal.default_dir(args.run_dir))
    try:
        rehearsal.check_apart(target, args.run_dir)
        cuts = rehearsal.Cuts(steps=args.steps, eval_examples=args.examples)
        site = None
        if args.site:
            from hpcxlt.config.load import read_yaml
            from hpcxlt.launch.site.profile import SiteError, parse_site

            site = parse_site(read_yaml(args.site, "site profile", SiteError), args.site)
        overrides, cut = rehearsal.rehearsal_overrides(
            args.config, list(args.override), cuts, rehearsal.training_world(site)
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    from hpcxlt.store import RunStore

    existing = RunStore(target)
    try:
        if existing.config_path.exists() and read_rehearsal(existing) is None:
            raise UserError(f"{target} holds a run that is not a rehearsal: pass another --rehearsal-dir")
    except RunDirError as err:
        raise UserError(str(err)) from None
    real_cfg = load_experiment(args.config, args.override)
    real_plan = plan(real_cfg)
    real_run_dir = args.run_dir
    print(
        f"rehearsal of {args.config} in {target} (the real run directory {real_run_dir} is not touched): "
        f"{cuts.steps} step(s) per training cell, {cuts.eval_examples} example(s) per evaluated language; "
        f"cuts: {' '.join('-o ' + o for o in cut)}"
    )

    def record(store, cfg, grid, site) -> None:
        if sorted(c.key for c in grid.cells) != sorted(c.key for c in real_plan.cells):  # pragma: no cover
            raise UserError("the rehearsal's cuts changed the grid's cells: a bug, please report it")
        write_settings(
            store,
            rehearsal.settings(
                config=args.config,
                overrides=list(args.override),
                cut=cut,
                cuts=cuts,
                real_cfg=real_cfg,
                real_plan=real_plan,
                rehearsal_plan=grid,
                real_run_dir=real_run_dir,
                site=site,
            ),
        )

    return record, argparse.Namespace(**{**vars(args), "run_dir": target, "override": overrides})


def _rehearsal_end(store, *, wait: bool) -> int:
    """The rehearsal's report, once its jobs have ended (Slurm: with --wait only); 0 when it passed."""
    from hpcxlt.launch import rehearsal  # deferred: this command's code loads when it runs

    if not wait:
        print(
            f"the rehearsal's report goes to {store.root}/rehearsal.json when its jobs have ended "
            f"(the aggregation job writes it; `hpcxlt status {store.root}` prints it)"
        )
        return 0
    rehearsal.wait_until_ended(store)
    from hpcxlt.launch.manage.status import run_status  # deferred: as above

    if rehearsal.never_starts(run_status(store)):
        from hpcxlt.launch.manage.cancel import cancel_run  # deferred: as above

        cancel_run(store.root)  # a throwaway run: the queue is left clean
        print("the aggregation job waited for evaluations that failed and could never start: cancelled")
    report = rehearsal.finish(store)
    print(rehearsal.render(report, store.root), end="")
    return 0 if report["ok"] else 1
