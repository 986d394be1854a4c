"""Submit a plan to Slurm as submitit job arrays with element-wise dependencies (the only submitit user).

Arrays and dependencies
  Jobs are grouped into arrays so that a downstream array lines up with its upstream one: task i of a
  target array trains from task i of the intermediate array, and `--dependency=aftercorr:<upstream>`
  lets each target start as soon as *its own* intermediate run is done, never waiting for the whole
  upstream array. Concretely (`build_arrays`): root jobs (nothing to wait for) form one array per stage
  and target task; a job with one upstream job in this submission goes into slot i of an array aligned
  with that upstream array (the k-th dependant of each slot into the k-th aligned array); where a slot
  would stay empty, or a job waits for jobs outside this submission, it is submitted alone with
  `afterok:<array>_<task>`. Arrays longer than the cluster's MaxArraySize are split, and their
  dependants are split at the same boundaries. `--kill-on-invalid-dep=yes` cancels the dependants of a
  failed job, so `resume` resubmits them with fresh dependencies instead of leaving them pending forever.
  The aggregation job waits for every evaluation (afterok).

Submission is atomic for the user: every array goes in held (`--hold`), the run directory records each
cell's job id, then everything is released. If sbatch refuses an array, what was already submitted is
cancelled before any of it ran. `--dry-run` prints the same sbatch text (submitit's own generator, with
placeholder ids in the dependencies).

Preemption and time limits (SIGUSR2)
  submitit installs a SIGUSR2 handler that calls the job's `checkpoint()`, requeues the job with
  `scontrol requeue` and exits. Inside the training loop that would stop the job mid-step, so the loop
  installs its own handlers for the duration of training (they only set a flag), saves a complete
  checkpoint at the next optimizer-step boundary, restores submitit's handlers and raises `Preempted`.
  `SlurmTask` catches that on rank 0 and re-raises SIGUSR2 to itself, handing over to submitit's
  handler, which now finds a consistent checkpoint on disk: it calls `checkpoint()` (a requeue count in
  the run directory, capped by the site's `max_requeues`), requeues and exits. A signal outside the
  loop (model loading, evaluation) goes straight to submitit's handler: nothing is lost because resume
  is a lookup (done markers, newest complete checkpoint). Ranks other than 0 return; the requeue ends
  the whole job. A SIGTERM-only stop (`scontrol requeue`, scancel, the end of a preemption GraceTime)
  is not requeued by us: Slurm itself decides whether the job comes back.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import submitit
from submitit.slurm.slurm import _make_sbatch_string

from hpcxlt.grid.plan import STAGES, Job, Plan
from hpcxlt.launch import queue
from hpcxlt.launch.base import AGGREGATE_KEY, aggregate_state, set_aggregate_state, unfinished_jobs
from hpcxlt.launch.site import SiteProfile
from hpcxlt.launch.worker import is_preemption, mark_failed, note_requeue, run_job
from hpcxlt.store import RunStore

RENDEZVOUS_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                   "MASTER_PORT", "TORCHELASTIC_RUN_ID")
WAITING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "SPECIAL_EXIT"})


class SubmitError(RuntimeError):
    """sbatch refused a submission (nothing of this submission is left in the queue)."""


# -- what runs on the nodes ------------------------------------------------------------------------
class SlurmTask:
    """One plan job as a submitit callable; checkpointable, so Slurm's SIGUSR2 requeues it."""

    def __init__(self, run_dir: str, job_key: str, max_requeues: int):
        self.run_dir = str(run_dir)
        self.job_key = job_key
        self.max_requeues = max_requeues

    def __call__(self) -> dict[str, Any] | None:
        env = submitit.JobEnvironment()
        log_path = str(env.paths.stdout)
        try:
            return run_job(self.run_dir, self.job_key, job_id=env.job_id, log_path=log_path)
        except Exception as err:
            if not is_preemption(err):
                raise
            if env.global_rank != 0:
                print(f"rank {env.global_rank}: {err}; rank 0 requeues the job", flush=True)
                return None
            if getattr(err, "signum", None) == signal.SIGTERM:
                # scancel, `scontrol requeue` or the end of a GraceTime: Slurm decides what comes next
                print(f"{err}; not requeueing on SIGTERM", flush=True)
                raise
            print(f"{err}; handing over to submitit to requeue", flush=True)
            try:
                signal.raise_signal(env._usr_sig())  # submitit: checkpoint() + scontrol requeue + exit
            except Exception as handover:  # not requeued (cap reached, requeue failed)
                mark_failed(RunStore(self.run_dir), list(_job_cells(self.run_dir, self.job_key)), handover, log_path)
                raise
            raise

    def checkpoint(self) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit's signal handler: count the requeue; resume is a lookup in the run dir."""
        env = submitit.JobEnvironment()
        if not note_requeue(self.run_dir, self.job_key, max_requeues=self.max_requeues,
                            reason=f"Slurm job {env.job_id} preempted or at its time limit"):
            return None  # submitit then ends the job without requeueing
        return submitit.helpers.DelayedSubmission(self)


def _job_cells(run_dir: str, job_key: str) -> tuple[str, ...]:
    return RunStore(run_dir).load_plan().job(job_key).cells


class AggregateTask:
    """The final aggregation: `<mpi launcher> python -m hpcxlt aggregate RUN_DIR` inside its allocation."""

    def __init__(self, run_dir: str, launcher: list[str]):
        self.run_dir = str(run_dir)
        self.launcher = list(launcher)

    def __call__(self) -> int:
        env = submitit.JobEnvironment()
        store = RunStore(self.run_dir)
        set_aggregate_state(store, "running", job_id=env.job_id, log=str(env.paths.stdout), host=env.hostname)
        launcher = list(self.launcher)
        if launcher and shutil.which(launcher[0]) is None:
            # the venv's own mpiexec (mpich wheel) when the venv is not activated in the job
            beside = Path(sys.executable).parent / launcher[0]
            if beside.exists():
                launcher[0] = str(beside)
        cmd = launcher + [sys.executable, "-m", "hpcxlt", "aggregate", self.run_dir]
        print("running:", shlex.join(cmd), flush=True)
        try:
            code = subprocess.run(cmd).returncode
        except OSError as err:
            set_aggregate_state(store, "failed", error=f"cannot start {shlex.join(cmd)}: {err}")
            raise
        if code != 0:
            set_aggregate_state(store, "failed", error=f"{shlex.join(cmd)} exited with {code}")
            raise RuntimeError(f"aggregation failed: {shlex.join(cmd)} exited with {code}")
        set_aggregate_state(store, "done", finished=time.time())
        return code

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)  # reading records again is cheap and idempotent


def aggregate_launcher(site: SiteProfile) -> list[str]:
    res = site.stage("aggregate")
    return shlex.split(site.mpi_launcher.format(ntasks=res.nodes * res.ntasks_per_node("aggregate")))


# -- grouping jobs into aligned arrays --------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ArraySpec:
    """One sbatch submission: an array (or a single job) of plan jobs with one resource profile."""

    name: str
    """Name within this submission, e.g. 'target.2'."""
    stage: str
    """Stage of its jobs ('aggregate' for the aggregation job)."""
    jobs: tuple[str, ...]
    """Plan job keys; element i runs as array task i."""
    corr: str | None = None
    """Upstream array whose task i must succeed before task i here starts (aftercorr)."""
    after: tuple[tuple[str, int], ...] = ()
    """(array name, task index) of upstream jobs in this submission to wait for (afterok)."""
    after_all: tuple[str, ...] = ()
    """Arrays of this submission whose every task must succeed first (afterok on the array)."""
    external: tuple[str, ...] = ()
    """Slurm ids of still-queued upstream jobs from an earlier submission (afterok)."""
    label: str = ""
    """What the array holds, for people (e.g. 'xnli')."""


def _stage_label(plan: Plan, job: Job) -> str:
    cell = plan.cell(job.cells[0])
    return f"{cell.target}({cell.trains} first)" if cell.trains else cell.target or ""


def build_arrays(plan: Plan, jobs: list[Job], *, external: dict[str, str] | None = None,
                 max_array_size: int) -> list[ArraySpec]:
    """Group `jobs` (a dependency-closed selection in plan order) into aligned arrays.

    `external` maps upstream job keys that are not submitted now but still queued to their Slurm ids;
    any other upstream job is taken to be done.
    """
    external = external or {}
    submit_keys = {job.key for job in jobs}
    specs: list[ArraySpec] = []
    by_name: dict[str, ArraySpec] = {}
    position: dict[str, tuple[str, int]] = {}
    counter: dict[str, int] = defaultdict(int)

    def add(stage: str, keys: list[str], **kw: Any) -> ArraySpec:
        spec = ArraySpec(name=f"{stage}.{counter[stage]}", stage=stage, jobs=tuple(keys), **kw)
        counter[stage] += 1
        specs.append(spec)
        by_name[spec.name] = spec
        for i, key in enumerate(keys):
            position[key] = (spec.name, i)
        return spec

    # A job waiting for another job of its own stage (a target after its prelude) goes in a later wave
    # of that stage, so its upstream array exists when it is aligned.
    by_key = {job.key: job for job in jobs}
    wave: dict[str, int] = {}
    for job in jobs:  # plan order: upstream first
        same = [wave[d] for d in job.deps if d in by_key and by_key[d].stage == job.stage]
        wave[job.key] = 1 + max(same) if same else 0
    for stage, level in ((stage, level) for stage in STAGES
                         for level in sorted({wave[j.key] for j in jobs if j.stage == stage})):
        roots: dict[str, list[Job]] = defaultdict(list)
        aligned: dict[str, dict[int, list[Job]]] = defaultdict(lambda: defaultdict(list))
        singles: list[Job] = []
        for job in (j for j in jobs if j.stage == stage and wave[j.key] == level):
            inner = [d for d in job.deps if d in submit_keys]
            outer = [d for d in job.deps if d in external]
            if not inner and not outer:
                roots[_stage_label(plan, job)].append(job)
            elif len(inner) == 1 and not outer:
                up_name, index = position[inner[0]]
                aligned[up_name][index].append(job)
            else:
                singles.append(job)
        for label, group in roots.items():
            for start in range(0, len(group), max_array_size):
                add(stage, [j.key for j in group[start:start + max_array_size]], label=label)
        for up_name, slots in aligned.items():
            width = len(by_name[up_name].jobs)
            for k in range(max(len(v) for v in slots.values())):
                members = {i: slots[i][k] for i in slots if len(slots[i]) > k}
                if len(members) == width:
                    keys = [members[i].key for i in range(width)]
                    add(stage, keys, corr=up_name, label=_stage_label(plan, members[0]))
                else:  # a ragged slot set cannot be aftercorr-aligned: wait for exactly the own upstream task
                    singles.extend(members[i] for i in sorted(members))
        for job in singles:
            add(stage, [job.key], label=_stage_label(plan, job),
                after=tuple(position[d] for d in job.deps if d in submit_keys),
                external=tuple(external[d] for d in job.deps if d in external))
    return specs


def aggregate_spec(specs: list[ArraySpec], external_evals: list[str]) -> ArraySpec:
    return ArraySpec(name="aggregate", stage="aggregate", jobs=(AGGREGATE_KEY,),
                     after_all=tuple(s.name for s in specs if s.stage == "eval"), external=tuple(external_evals),
                     label="tables + plots")


def placeholder_ids(spec: ArraySpec) -> list[str]:
    n = len(spec.jobs)
    # '@name' needs no shell quoting, so the dry-run script differs from the submitted one only in the ids
    return [f"@{spec.name}"] if n == 1 else [f"@{spec.name}_{i}" for i in range(n)]


def dependency(spec: ArraySpec, ids: dict[str, list[str]]) -> str | None:
    """The --dependency value of `spec`, given the Slurm ids (one per task) of the arrays it waits for."""
    if spec.corr is not None:
        upstream = ids[spec.corr]
        # a one-element "array" went in as a plain job: wait for it directly
        return f"afterok:{upstream[0]}" if len(upstream) == 1 else f"aftercorr:{queue.array_root(upstream[0])}"
    waits = [ids[name][i] for name, i in spec.after]
    waits += [queue.array_root(ids[name][0]) for name in spec.after_all]
    waits += list(spec.external)
    return "afterok:" + ":".join(waits) if waits else None


# -- sbatch parameters -----------------------------------------------------------------------------
def stage_parameters(site: SiteProfile, stage: str, experiment: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch names) for one stage of the site profile."""
    res = site.stage(stage)
    extra: dict[str, Any] = {"requeue": True, "kill-on-invalid-dep": "yes", "hold": True}
    if res.mem is not None:
        extra["mem"] = res.mem  # passed verbatim: submitit's own `mem` would reinterpret the value as GB
    extra.update(res.sbatch_extra)
    params: dict[str, Any] = {
        "job_name": f"hpcxlt-{experiment}-{stage}",
        "time": res.time_minutes(),  # whole minutes: submitit also uses it to tell time-outs from preemptions
        "nodes": res.nodes,
        "ntasks_per_node": res.ntasks_per_node(stage),
        "cpus_per_task": res.cpus_per_task,
        "signal_delay_s": site.signal_delay_s,
        "stderr_to_stdout": True,
        "wckey": None,
        "array_parallelism": site.array_throttle or site.max_array_size,
        "additional_parameters": extra,
    }
    for key in ("partition", "account", "qos", "constraint", "gres"):
        if getattr(res, key) is not None:
            params[key] = getattr(res, key)
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.exclusive:
        params["exclusive"] = True
    # sbatch exports the submitting environment; rendezvous variables left there by an earlier
    # in-process run (torch.distributed reads RANK, MASTER_PORT, ...) would make every task of every
    # job claim rank 0 of one world and the same port
    params["setup"] = [f"unset {' '.join(RENDEZVOUS_VARS)}", *site.setup]
    if stage == "aggregate":
        # one process in the batch step; it starts the MPI ranks itself with the site's launcher
        params["use_srun"] = False
    return params


def submitit_command(folder: Path) -> str:
    """The command submitit puts in the sbatch script (SlurmExecutor._submitit_command_str)."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_text(params: dict[str, Any], n_tasks: int, folder: Path, dep: str | None) -> str:
    """The sbatch script submitit writes for this submission (submitit's own generator)."""
    full = {**params, "dependency": dep} if dep else dict(params)
    return _make_sbatch_string(command=submitit_command(folder), folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None, **full)


def slurm_folder(store: RunStore) -> Path:
    return store.logs_dir / "slurm"


def log_path(store: RunStore, job_id: str) -> str:
    """Rank 0's log of a job or array task (submitit's %j_%t_log.out, stderr merged in)."""
    return str(slurm_folder(store) / f"{job_id}_0_log.out")


# -- what to submit ---------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Pending:
    """What a submission (or resume) has to do."""

    jobs: list[Job] = field(default_factory=list)
    """Jobs to submit, in plan order."""
    external: dict[str, str] = field(default_factory=dict)
    """Upstream job key -> Slurm id, for still-queued jobs the new ones must wait for."""
    cancel: list[str] = field(default_factory=list)
    """Slurm ids of queued jobs that wait for a dead upstream id and are resubmitted instead."""
    aggregate: bool = False
    """Whether the aggregation job is submitted."""
    aggregate_external: list[str] = field(default_factory=list)
    """Queued evaluation jobs the aggregation must wait for."""

    cells: int = 0
    """Cells of those jobs that are not done (done cells of a resubmitted eval job are skipped again)."""


def recorded_job_id(store: RunStore, job: Job) -> str | None:
    for key in job.cells:
        if not store.is_done(key):
            return store.state(key).get("job_id")
    return None


def pending_work(store: RunStore, plan: Plan, alive: dict[str, str], *, with_aggregate: bool) -> Pending:
    """Jobs that are neither done nor queued, plus what they must wait for. Pure given `alive`."""
    unfinished = unfinished_jobs(store, plan)
    ids = {job.key: recorded_job_id(store, job) for job in unfinished}
    queued = {key for key, jid in ids.items() if jid and jid in alive}
    out = Pending()
    submit: set[str] = set()
    for job in unfinished:  # plan order is topological: upstream decisions are made first
        if job.key not in queued:
            out.jobs.append(job)
            submit.add(job.key)
        elif alive[ids[job.key]] in WAITING_STATES and any(d in submit for d in job.deps):
            out.cancel.append(ids[job.key])  # it waits for an id that will never succeed
            out.jobs.append(job)
            submit.add(job.key)
    out.external = {d: ids[d] for job in out.jobs for d in job.deps if d in queued and d not in submit}
    out.cells = sum(1 for job in out.jobs for key in job.cells if not store.is_done(key))
    if with_aggregate:
        agg = aggregate_state(store)
        agg_id = agg.get("job_id")
        agg_queued = agg.get("state") != "done" and agg_id in alive
        evals_resubmitted = any(job.stage == "eval" for job in out.jobs)
        if agg_queued and evals_resubmitted and alive[agg_id] in WAITING_STATES:
            out.cancel.append(agg_id)
            agg_queued = False
        if agg.get("state") != "done" and not agg_queued:
            out.aggregate = True
            out.aggregate_external = sorted(ids[j.key] for j in unfinished if j.stage == "eval" and j.key in queued and j.key not in submit)
    return out


def aggregate_available() -> bool:
    import importlib.util

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
        rows.append({"name": spec.name, "stage": spec.stage, "tasks": len(spec.jobs), "label": spec.label,
                     "dependency": dependency(spec, ids), "jobs": list(spec.jobs),
                     "job_ids": ids.get(spec.name)})
    return rows


def dry_run(store: RunStore, plan: Plan, site: SiteProfile, pending: Pending, experiment: str,
            out: TextIO) -> list[dict[str, Any]]:
    """Print the arrays, their dependencies and the exact sbatch scripts, submitting nothing."""
    specs = plan_specs(store, plan, site, pending)
    ids = {spec.name: placeholder_ids(spec) for spec in specs}
    folder = slurm_folder(store)
    rows = describe(specs, ids)
    print(f"slurm site {site.name} ({site.source}); dry run: nothing is submitted", file=out)
    if pending.cancel:
        print(f"would cancel {len(pending.cancel)} queued job(s) waiting on work that is resubmitted", file=out)
    print(f"would submit {len(specs)} sbatch submission(s): {len(pending.jobs)} jobs, {pending.cells} cells"
          + (" + the aggregation job" if pending.aggregate else ""), file=out)
    print("(submitted held, released once the run directory records every job id)", file=out)
    print(file=out)
    print(f"{'array':<18}{'stage':<14}{'tasks':>6}  {'task':<16}dependency", file=out)
    for row in rows:
        print(f"{row['name']:<18}{row['stage']:<14}{row['tasks']:>6}  {row['label'] or '-':<16}"
              f"{row['dependency'] or '-'}", file=out)
    for spec, row in zip(specs, rows):
        jobs = ", ".join(spec.jobs[:4]) + (f", ... ({len(spec.jobs)} tasks)" if len(spec.jobs) > 4 else "")
        row["sbatch"] = sbatch_text(stage_parameters(site, spec.stage, experiment), len(spec.jobs), folder,
                                    row["dependency"])
        print(f"\n==> {spec.name}: {jobs}", file=out)
        print(row["sbatch"], file=out, end="")
    return rows


def _submit_one(spec: ArraySpec, params: dict[str, Any], folder: Path, run_dir: str, site: SiteProfile,
                dep: str | None) -> list[str]:
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=site.max_requeues)
    executor.update_parameters(**params, **({"dependency": dep} if dep else {}))
    if spec.stage == "aggregate":
        tasks: list[Any] = [AggregateTask(run_dir, aggregate_launcher(site))]
    else:
        tasks = [SlurmTask(run_dir, key, site.max_requeues) for key in spec.jobs]
    jobs = executor.submit_array(tasks)
    return [job.job_id for job in jobs]


def submit(store: RunStore, plan: Plan, site: SiteProfile, pending: Pending, experiment: str, *,
           release: bool = True) -> list[dict[str, Any]]:
    """Submit `pending` held, record every cell's job id, then release; return one row per submission.

    release=False leaves the jobs held (benchmarks, tests that cancel them again).
    """
    specs = plan_specs(store, plan, site, pending)
    folder = slurm_folder(store)
    folder.mkdir(parents=True, exist_ok=True)
    if pending.cancel:
        queue.cancel(pending.cancel)
    ids: dict[str, list[str]] = {}
    try:
        for spec in specs:
            params = stage_parameters(site, spec.stage, experiment)
            dep = dependency(spec, ids)
            # retried only while sbatch could not reach the controller at all (nothing was submitted)
            ids[spec.name] = queue.retrying(lambda: _submit_one(spec, params, folder, str(store.root), site, dep),
                                            f"sbatch {spec.name}",
                                            transient=lambda text: bool(queue.NOT_SUBMITTED.search(text)))
    except Exception as err:
        submitted = [jid for names in ids.values() for jid in names]
        if submitted:
            queue.cancel({queue.array_root(j) for j in submitted})
        message = getattr(err, "args", [str(err)])[0] if err.args else str(err)
        raise SubmitError(
            f"sbatch refused {spec.name} ({spec.stage}, {len(spec.jobs)} tasks): {str(message).strip()[:800]}"
            + (f"; cancelled the {len(ids)} submission(s) made before it (they were held, nothing ran)" if ids else "")
        ) from err
    now = time.time()
    writes = []
    for spec in specs:
        for key, jid in zip(spec.jobs, ids[spec.name]):
            if spec.stage == "aggregate":
                set_aggregate_state(store, "submitted", job_id=jid, log=log_path(store, jid), submitted=now)
                continue
            writes += [(cell, jid, spec.name) for cell in plan.job(key).cells if not store.is_done(cell)]

    def record(item: tuple[str, str, str]) -> None:
        cell, jid, name = item
        store.set_state(cell, "submitted", job_id=jid, log=log_path(store, jid), array=name, submitted=now,
                        requeues=0, error=None, traceback=None)

    # one atomic, fsynced file per cell; fsync waits on the disk, so a few threads overlap those waits
    # (about 7x faster for a 5,000-cell grid than one after the other)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(record, writes))
    if release:
        queue.release({queue.array_root(j) for names in ids.values() for j in names})
    return describe(specs, ids)
