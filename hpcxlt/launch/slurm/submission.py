"""Submit a plan to Slurm as submitit job arrays (sbatch parameters per stage, dry run, held submission).

Submission is atomic for the user: every array goes in held (`--hold`), the run directory records each
cell's job id (one submission record, `hpcxlt.store.cell_state`), then everything is released. If sbatch refuses an array, what was already submitted is
cancelled before any of it ran. `--dry-run` prints the same sbatch text (submitit's own generator, with
placeholder ids in the dependencies).

Arrays and their alignment: `hpcxlt.launch.slurm.arrays`; what is left to submit: `hpcxlt.launch.slurm.pending`;
what runs on the nodes: `hpcxlt.launch.execute.slurm_tasks`.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import submitit
from submitit.slurm.slurm import _make_sbatch_string

from hpcxlt.grid.plan import Plan

# jobs submitted before the split pickled these two under this module's name
from hpcxlt.launch.execute.slurm_tasks import AggregateTask, FeederTask, SlurmTask, aggregate_launcher  # noqa: F401
from hpcxlt.launch.record import set_aggregate_state
from hpcxlt.launch.site.profile import SiteProfile
from hpcxlt.launch.slurm import queue, shared_array
from hpcxlt.launch.slurm.arrays import ArraySpec, aggregate_spec, build_arrays, dependency, placeholder_ids
from hpcxlt.launch.slurm.exit_trap import trap_lines
from hpcxlt.launch.slurm.pending import Pending
from hpcxlt.store import RunStore

RENDEZVOUS_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


class SubmitError(RuntimeError):
    """sbatch refused a submission (nothing of this submission is left in the queue)."""


# -- paths in a batch script -------------------------------------------------------------------------
def batch_path_problem(path: str | Path) -> str | None:
    """Why `path` cannot stand in an sbatch script (None: it can).

    Paths reach the script shell-quoted (the #SBATCH lines, the command, the EXIT trap), which sbatch and
    bash both read back literally: spaces, quotes, `$(...)` are fine. Three things cannot be carried: a
    control character (a newline splits an #SBATCH line), `%` (sbatch and srun read it as a file-name
    pattern: `%j` would become the job id) and a backslash (it turns those patterns off, so every task of
    an array would write one log file)."""
    text = str(Path(path).resolve())
    for char in text:
        if ord(char) < 32 or ord(char) == 127:
            return f"{text!r} holds the control character {char!r}, which cannot stand in an #SBATCH line"
        if char in "%\\":
            return f"{text!r} holds {char!r}, which sbatch and srun read as part of a log-file pattern (%j, %A, ...)"
    return None


def check_batch_path(path: str | Path, what: str = "run directory") -> None:
    """Refuse, before anything is written or submitted, a path that cannot stand in a batch script."""
    problem = batch_path_problem(path)
    if problem:
        raise SubmitError(
            f"the {what} {problem}; choose a path without it (letters, digits, spaces, quotes and "
            "other punctuation are fine)"
        )


# -- the requeue cap's one owner -------------------------------------------------------------------
NO_SUBMITIT_CAP = 1_000_000
"""submitit's own time-out countdown (`max_num_timeout`), set out of reach: it counts every time-out and
never forgets, while the cap that decides is `worker.note_requeue` (the site's `max_requeues`, reset when
the job made progress since its last requeue: a job that keeps advancing is never failed for being
preempted or timed out often). Two owners gave two different answers to "may this job come back?"."""


def executor_for(folder: Path) -> shared_array.Executor:
    """The executor every hpcxlt submission uses (requeues capped by `note_requeue` alone)."""
    return shared_array.Executor(folder=folder, max_num_timeout=NO_SUBMITIT_CAP)


# -- sbatch parameters -----------------------------------------------------------------------------
# sbatch options that submitit's SlurmExecutor takes by name (its own parameter, '-' as '_'); the others
# go to `additional_parameters` verbatim (mem among them: submitit's `mem` would read the value as GB)
_SUBMITIT_NAMED = (
    "nodes",
    "ntasks-per-node",
    "cpus-per-task",
    "time",
    "partition",
    "account",
    "qos",
    "constraint",
    "gres",
    "gpus-per-node",
    "exclusive",
)


def stage_parameters(site: SiteProfile, stage: str, experiment: str, run_dir: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for one stage: the stage's request (`StageResources.sbatch_options`)
    plus what every hpcxlt job adds (held submission, requeue, its log, the healing trap)."""
    # a requeued job appends to its log instead of truncating what its earlier attempts wrote
    extra: dict[str, Any] = {"requeue": True, "kill-on-invalid-dep": "yes", "hold": True, "open-mode": "append"}
    params: dict[str, Any] = {
        "job_name": f"hpcxlt-{experiment}-{stage}",
        "signal_delay_s": site.signal_delay_s,
        "stderr_to_stdout": True,
        "wckey": None,
        "array_parallelism": min(site.array_throttle or site.max_array_size, site.max_running or site.max_array_size),
        "additional_parameters": extra,
    }
    for key, value in site.stage(stage).sbatch_options(stage).items():
        if key in _SUBMITIT_NAMED:
            params[key.replace("-", "_")] = (
                value  # `time` in whole minutes: submitit tells time-outs from preemptions by it
            )
        else:
            extra[key] = value
    # sbatch exports the submitting environment; rendezvous variables left there by an earlier
    # in-process run (torch.distributed reads RANK, MASTER_PORT, ...) would make every task of every
    # job claim rank 0 of one world and the same port
    params["setup"] = [
        f"unset {' '.join(RENDEZVOUS_VARS)}",
        *site.setup,
        *site.network_exports(),
        *trap_lines(run_dir, site.max_retries, site.retry_backoff_s),
    ]  # self-healing (launch.heal)
    if stage == "aggregate":
        # one process in the batch step; it starts the MPI ranks itself with the site's launcher
        params["use_srun"] = False
    return params


def sbatch_text(params: dict[str, Any], n_tasks: int, folder: Path, dep: str | None, name: str = "array") -> str:
    """The sbatch script submitit writes for this submission (submitit's own generator); an array's
    shared pickle shows as @uuid (named at submission; like the @name ids, it needs no shell quoting)."""
    full = {**params, "dependency": dep} if dep else dict(params)
    shared = folder / shared_array.ARRAYS_DIR / f"{name}.@uuid.pkl" if n_tasks > 1 else None
    return _make_sbatch_string(
        command=shared_array.command(folder, shared), folder=folder, map_count=n_tasks if n_tasks > 1 else None, **full
    )


def slurm_folder(store: RunStore) -> Path:
    return store.slurm_logs_dir


def log_path(store: RunStore, job_id: str) -> str:
    """Rank 0's log of a job or array task (submitit's %j_%t_log.out, stderr merged in)."""
    return str(slurm_folder(store) / f"{job_id}_0_log.out")


# -- what to submit ---------------------------------------------------------------------------------
def aggregate_available() -> bool:

    return importlib.util.find_spec("hpcxlt.cli.aggregate") is not None


def plan_specs(store: RunStore, plan: Plan, site: SiteProfile, pending: Pending) -> list[ArraySpec]:
    specs = build_arrays(plan, pending.jobs, external=pending.external, max_array_size=site.max_array_size)
    if pending.aggregate:
        specs.append(aggregate_spec(specs, pending.aggregate_external))
    return specs


# -- dry run and submission -------------------------------------------------------------------------
def describe(specs: list[ArraySpec], ids: dict[str, list[str]]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        rows.append(
            {
                "name": spec.name,
                "stage": spec.stage,
                "tasks": len(spec.jobs),
                "label": spec.label,
                "dependency": dependency(spec, ids),
                "jobs": list(spec.jobs),
                "job_ids": ids.get(spec.name),
            }
        )
    return rows


def dry_run(
    store: RunStore,
    plan: Plan,
    site: SiteProfile,
    pending: Pending,
    experiment: str,
    out: TextIO,
    *,
    deferred: int = 0,
) -> list[dict[str, Any]]:
    """Print the arrays, their dependencies and the exact sbatch scripts, submitting nothing."""
    specs = plan_specs(store, plan, site, pending)
    ids = {spec.name: placeholder_ids(spec) for spec in specs}
    folder = slurm_folder(store)
    rows = describe(specs, ids)
    print(f"slurm site {site.name} ({site.source}); dry run: nothing is submitted", file=out)
    if pending.cancel:
        print(f"would cancel {len(pending.cancel)} queued job(s) waiting on work that is resubmitted", file=out)
    print(
        f"would submit {len(specs)} sbatch submission(s): {len(pending.jobs)} jobs, {pending.cells} cells"
        + (" + the aggregation job" if pending.aggregate else ""),
        file=out,
    )
    if deferred:  # why these counts are smaller than `hpcxlt plan`'s
        print(
            f"this is the first wave: {deferred} more job(s) go in later waves (site max_queued_jobs="
            f"{site.max_queued_jobs}; a feeder job submits each next wave when the previous one has ended)",
            file=out,
        )
    print("(submitted held, released once the run directory records every job id)", file=out)
    print(file=out)
    width = max([len("task"), *(len(row["label"] or "-") for row in rows)]) + 2  # columns never run together
    print(f"{'array':<18}{'stage':<14}{'tasks':>6}  {'task':<{width}}dependency", file=out)
    for row in rows:
        print(
            f"{row['name']:<18}{row['stage']:<14}{row['tasks']:>6}  {row['label'] or '-':<{width}}"
            f"{row['dependency'] or '-'}",
            file=out,
        )
    for spec, row in zip(specs, rows):
        jobs = ", ".join(spec.jobs[:4]) + (f", ... ({len(spec.jobs)} tasks)" if len(spec.jobs) > 4 else "")
        row["sbatch"] = sbatch_text(
            stage_parameters(site, spec.stage, experiment, str(store.root)),
            len(spec.jobs),
            folder,
            row["dependency"],
            spec.name,
        )
        print(f"\n==> {spec.name}: {jobs}", file=out)
        print(row["sbatch"], file=out, end="")
    return rows


SBATCH_IN_FLIGHT = 4
"""sbatch calls in flight at once: enough to overlap the controller's answers, few enough to be gentle on it."""


def independent_batches(specs: list[ArraySpec]) -> list[list[ArraySpec]]:
    """`specs` cut, in order, into runs of arrays none of which waits for another of its run."""
    batches: list[list[ArraySpec]] = []
    names: set[str] = set()
    for spec in specs:
        upstream = {spec.corr} | {name for name, _ in spec.after} | set(spec.after_all)
        if not batches or upstream & names:
            batches.append([])
            names = set()
        batches[-1].append(spec)
        names.add(spec.name)
    return batches


def _submit_one(spec: ArraySpec, executor: shared_array.Executor, run_dir: str, site: SiteProfile) -> list[str]:
    """Submit one array (or a single job) with an executor that holds its parameters and dependency."""
    if spec.stage == "aggregate":
        tasks: list[Any] = [AggregateTask(run_dir, aggregate_launcher(site))]
    else:
        tasks = [SlurmTask(run_dir, key, site.max_requeues) for key in spec.jobs]
    # one pickle for the whole array, not one per task (hpcxlt.launch.slurm.shared_array)
    return shared_array.submit(executor, tasks, spec.name)


def submit(
    store: RunStore, plan: Plan, site: SiteProfile, pending: Pending, experiment: str, *, release: bool = True
) -> list[dict[str, Any]]:
    """Submit `pending` held, record every cell's job id, then release; return one row per submission.

    release=False leaves the jobs held (benchmarks, tests that cancel them again).
    """
    specs = plan_specs(store, plan, site, pending)
    folder = slurm_folder(store)
    folder.mkdir(parents=True, exist_ok=True)
    if pending.cancel:
        queue.cancel(pending.cancel)
    ids: dict[str, list[str]] = {}
    checked: dict[str, dict[str, Any]] = {}  # stage -> its sbatch parameters, checked by submitit once

    def one(spec: ArraySpec) -> list[str]:
        executor = executor_for(folder)
        dep = dependency(spec, ids)
        executor.parameters = {**checked[spec.stage], **({"dependency": dep} if dep else {})}
        # retried only while sbatch could not reach the controller at all (nothing was submitted)
        return queue.retrying(
            lambda: _submit_one(spec, executor, str(store.root), site),
            f"sbatch {spec.name}",
            transient=lambda text: bool(queue.NOT_SUBMITTED.search(text)),
        )

    for spec in specs:
        if spec.stage not in checked:
            stage = submitit.SlurmExecutor(folder=folder, max_num_timeout=NO_SUBMITIT_CAP)
            stage.update_parameters(**stage_parameters(site, spec.stage, experiment, str(store.root)))
            checked[spec.stage] = dict(stage.parameters)
    # arrays that do not wait for each other go in side by side: most of an sbatch call is waiting for
    # the controller's answer, and a grid's arrays of one stage are independent
    with ThreadPoolExecutor(max_workers=SBATCH_IN_FLIGHT) as pool:
        for batch in independent_batches(specs):
            futures = [(spec, pool.submit(one, spec)) for spec in batch]
            failed = None
            for spec, future in futures:
                try:
                    ids[spec.name] = future.result()
                except Exception as err:
                    failed = failed or (spec, err)
            if failed is not None:
                spec, error = failed
                submitted = [jid for names in ids.values() for jid in names]
                if submitted:
                    queue.cancel({queue.array_root(j) for j in submitted})
                message = error.args[0] if error.args else str(error)
                raise SubmitError(
                    f"sbatch refused {spec.name} ({spec.stage}, {len(spec.jobs)} tasks): {str(message).strip()[:800]}"
                    + (
                        f"; cancelled the {len(ids)} other submission(s) of this run (they were held, nothing ran)"
                        if ids
                        else ""
                    )
                ) from error
    cells: dict[str, tuple[str, str]] = {}
    for spec in specs:
        for key, jid in zip(spec.jobs, ids[spec.name]):
            if spec.stage == "aggregate":
                set_aggregate_state(store, "submitted", job_id=jid, log=log_path(store, jid), submitted=time.time())
                continue
            cells.update((cell, (jid, spec.name)) for cell in plan.job(key).cells if not store.is_done(cell))
    # one record for the whole submission (not a file per cell): CellStates derives each cell's state
    store.record_submission(cells, log_pattern=log_path(store, "{job_id}"))
    if release:
        queue.release({queue.array_root(j) for names in ids.values() for j in names})
    return describe(specs, ids)


FEEDER_MINUTES = 15


def submit_feeder(store: RunStore, site: SiteProfile, experiment: str, after: list[str]) -> str:
    """Submit the feeder of a wave: it runs `hpcxlt resume RUN_DIR --next-wave` once every job in `after`
    (Slurm ids) has ended, whatever its outcome. Returns its job id."""
    params = stage_parameters(site, "aggregate", experiment, str(store.root))
    extra = {k: v for k, v in params["additional_parameters"].items() if k != "hold"}
    params.update(
        job_name=f"hpcxlt-{experiment}-feeder",
        ntasks_per_node=1,
        nodes=1,
        use_srun=False,
        time=max(FEEDER_MINUTES, site.signal_delay_s // 60 + 5),
        additional_parameters=extra,
    )
    roots = sorted({queue.array_root(j) for j in after})
    if roots:
        params["dependency"] = "afterany:" + ":".join(roots)
    folder = slurm_folder(store)

    def once() -> str:
        executor = executor_for(folder)
        executor.update_parameters(**params)
        return shared_array.submit(executor, [FeederTask(str(store.root))], "feeder")[0]

    return queue.retrying(once, "sbatch feeder", transient=lambda text: bool(queue.NOT_SUBMITTED.search(text)))
