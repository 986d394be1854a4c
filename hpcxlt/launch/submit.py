"""Submit what is left of a run: shared by `hpcxlt submit` (new run) and `hpcxlt resume` (existing one).

"What is left" is always computed from the run directory (done markers) and, on Slurm, the queue, so
submitting or resuming twice never starts a job twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from hpcxlt.grid.plan import Plan
from hpcxlt.launch.execute.local import run_local
from hpcxlt.launch.record import aggregate_state, unfinished_jobs, update_launch, write_launch
from hpcxlt.launch.site.profile import SiteProfile, parse_site
from hpcxlt.launch.slurm import queue
from hpcxlt.launch.slurm.pending import pending_work
from hpcxlt.launch.slurm.waves import record_wave, split_wave
from hpcxlt.launch.submit_checks import check_before_submit
from hpcxlt.store import RunStore


@dataclass(kw_only=True)
class LaunchResult:
    """What a submit/resume did."""

    executor: str
    """'local' or 'slurm'."""
    jobs: int = 0
    """Jobs submitted (Slurm) or run (local)."""
    cells: int = 0
    """Cells in those jobs."""
    submissions: list[dict[str, Any]] = field(default_factory=list)
    """Slurm: one row per sbatch submission (name, stage, tasks, dependency, job ids)."""
    cancelled: list[str] = field(default_factory=list)
    """Slurm: queued job ids cancelled because they waited for resubmitted work."""
    aggregate: bool = False
    """Slurm: whether the aggregation job was submitted."""
    deferred: int = 0
    """Slurm with max_queued_jobs: jobs left for later waves."""
    feeder: str | None = None
    """Slurm with max_queued_jobs: the job that submits the next wave."""
    exit_code: int = 0
    """0 when everything submitted (or, locally, ran) fine."""

    def summary(self, *, dry_run: bool) -> dict[str, Any]:
        """The JSON line `submit --json` and `resume --json` print."""
        return {
            "executor": self.executor,
            "dry_run": dry_run,
            "jobs": self.jobs,
            "cells": self.cells,
            "submissions": len(self.submissions),
            "aggregate": self.aggregate,
            "exit_code": self.exit_code,
        }


def site_record(site: SiteProfile, raw: dict[str, Any]) -> dict[str, Any]:
    return {"source": site.source, "data": raw}


def site_from_record(record: dict[str, Any]) -> SiteProfile:
    return parse_site(record["data"], record.get("source") or "launch.json")


def launch_slurm(
    store: RunStore,
    plan: Plan,
    experiment: str,
    site: SiteProfile,
    site_raw: dict[str, Any],
    *,
    dry_run: bool,
    aggregate: bool = True,
    out: TextIO | None = None,
    command: str = "submit",
    next_wave: bool = False,
) -> LaunchResult:
    """Submit (or, with dry_run, print) every job that is neither done nor alive in the queue.

    aggregate=False leaves out the final `hpcxlt aggregate` job (run it by hand later). A real
    submission holds the run directory's lock from reading the queue to recording the job ids, so two
    concurrent submits or resumes never submit the same work twice.
    """
    # heavy: submitit (via hpcxlt.launch.slurm.shared_array)
    from hpcxlt.launch.slurm.submission import check_batch_path

    check_batch_path(store.root)  # before the lock file or anything else is written
    if store.config_path.exists():  # a dry run of a new run directory: `submit` checked the config itself
        check_before_submit(store.load_config(), site, str(store.root))
    if dry_run:
        return _launch_slurm(
            store, plan, experiment, site, site_raw, dry_run=True, aggregate=aggregate, out=out, next_wave=next_wave
        )
    with store.lock(command):
        _redo_unreadable(store, plan, out)
        return _launch_slurm(
            store, plan, experiment, site, site_raw, dry_run=False, aggregate=aggregate, out=out, next_wave=next_wave
        )


def _launch_slurm(
    store: RunStore,
    plan: Plan,
    experiment: str,
    site: SiteProfile,
    site_raw: dict[str, Any],
    *,
    dry_run: bool,
    aggregate: bool,
    out: TextIO | None,
    next_wave: bool,
) -> LaunchResult:
    from hpcxlt.launch.slurm import submission as slurm  # heavy: submitit (via hpcxlt.launch.slurm.shared_array)

    out = sys.stdout if out is None else out
    if not dry_run and not queue.available():
        raise slurm.SubmitError("sbatch/squeue not found: submit from a Slurm login node, or use --local or --dry-run")
    recorded_ids = (
        # a done cell's job id is its newest submission's: its own state file need not be read
        {s.get("job_id") for s in store.states([c.key for c in plan.cells], done_details=False).values()} - {None}
        if store.exists()
        else set()
    )
    has_ids = bool(recorded_ids)
    alive = queue.alive_jobs() if (has_ids and (not dry_run or queue.available())) else {}
    if alive and not dry_run:
        # jobs left held by a submission that died before releasing them would wait forever
        recorded = recorded_ids | {aggregate_state(store).get("job_id")}
        stuck = sorted(queue.held_jobs() & recorded)
        if stuck:
            queue.release({queue.array_root(j) for j in stuck})
            print(f"released {len(stuck)} job(s) left held by an interrupted submission", file=out)
    with_aggregate = aggregate and slurm.aggregate_available()
    pending = pending_work(store, plan, alive, with_aggregate=with_aggregate, new_only=next_wave)
    deferred = 0
    if site.max_queued_jobs and (pending.jobs or pending.aggregate):
        # every queued task of this user counts, a running feeder too (it ends only after submitting)
        everything = alive if has_ids else _queued_now(dry_run)
        room = site.max_queued_jobs - len(everything) - 1
        if room < 1 and not next_wave:
            raise slurm.SubmitError(
                f"the queue already holds {len(everything)} of this user's jobs and the site allows "
                f"max_queued_jobs={site.max_queued_jobs}: nothing submitted; try again when some have ended"
            )
        pending, deferred = split_wave(store, pending, max(room, 0))
    result = LaunchResult(
        executor="slurm",
        jobs=len(pending.jobs),
        cells=pending.cells,
        cancelled=list(pending.cancel),
        aggregate=pending.aggregate,
        deferred=deferred,
    )
    if dry_run:
        result.submissions = slurm.dry_run(store, plan, site, pending, experiment, out, deferred=deferred)
        return result
    write_launch(store, "slurm", site_record(site, site_raw), aggregate=aggregate)
    if pending.jobs or pending.aggregate:
        result.submissions = slurm.submit(store, plan, site, pending, experiment)
    if deferred or (next_wave and site.max_queued_jobs):
        if deferred:
            wave_ids = [jid for row in result.submissions for jid in row["job_ids"] or []]
            run_ids = [jid for jid in alive if jid in recorded_ids]
            result.feeder = slurm.submit_feeder(store, site, experiment, wave_ids or run_ids)
        update_launch(
            store, lambda data: record_wave(data, jobs=len(pending.jobs), deferred=deferred, feeder=result.feeder)
        )
    return result


def _queued_now(dry_run: bool) -> dict[str, str]:
    """This user's queued jobs; a dry run away from a cluster plans as if the queue were empty."""

    if dry_run:
        try:
            return queue.alive_jobs() if queue.available() else {}
        except queue.QueueError:
            return {}
    return queue.alive_jobs()


def _redo_unreadable(store: RunStore, plan: Plan, out: TextIO | None) -> None:
    """Done cells whose record cannot be read are evaluated again (their unreadable lines kept aside)."""
    again = store.repair_records(plan)
    if again:
        print(
            f"{len(again)} done cell(s) had no readable record and are evaluated again: {', '.join(again[:5])}"
            + (" ..." if len(again) > 5 else ""),
            file=out or sys.stdout,
        )


def launch_local(
    store: RunStore,
    plan: Plan,
    *,
    dry_run: bool,
    progress: bool = True,
    out: TextIO | None = None,
    command: str = "submit",
) -> LaunchResult:
    """Run (or, with dry_run, list) every unfinished job in this process, in dependency order; a real run
    holds the run directory's lock throughout (a second local run waits instead of training the same cells)."""
    if store.config_path.exists():
        check_before_submit(store.load_config(), None, str(store.root))
    if dry_run:
        return _launch_local(store, plan, dry_run=True, progress=progress, out=out)
    with store.lock(command):
        _redo_unreadable(store, plan, out)
        return _launch_local(store, plan, dry_run=False, progress=progress, out=out)


def _launch_local(store: RunStore, plan: Plan, *, dry_run: bool, progress: bool, out: TextIO | None) -> LaunchResult:
    out = sys.stdout if out is None else out
    todo = unfinished_jobs(store, plan)
    cells = sum(1 for job in todo for key in job.cells if not store.is_done(key))
    result = LaunchResult(executor="local", jobs=len(todo), cells=cells)
    if dry_run:
        print(
            f"local executor; dry run: would run {result.jobs} jobs ({result.cells} cells) in this process, in order:",
            file=out,
        )
        for job in todo:
            print(
                f"  {job.key}  ({len(job.cells)} cell{'s' if len(job.cells) > 1 else ''})"
                + (f"  after {', '.join(job.deps)}" if job.deps else ""),
                file=out,
            )
        return result
    write_launch(store, "local")
    if not todo:
        return result

    report = run_local(store.root, progress=progress)
    result.submissions = [
        {"ran": report.ran, "failed": report.failed, "blocked": report.blocked, "interrupted": report.interrupted}
    ]
    if report.interrupted:
        print(f"interrupted while running {report.interrupted}; `hpcxlt resume {store.root}` continues", file=out)
        result.exit_code = 130
    for key, error in report.failed.items():
        print(f"FAILED {key}: {error}", file=out)
    blocked_by: dict[str, list[str]] = {}
    for key, cause in report.blocked.items():
        blocked_by.setdefault(cause, []).append(key)
    for cause, keys in blocked_by.items():
        print(f"skipped {len(keys)} job(s) downstream of failed {cause}: {', '.join(keys)}", file=out)
    if report.failed or report.blocked:
        result.exit_code = result.exit_code or 1
    return result
