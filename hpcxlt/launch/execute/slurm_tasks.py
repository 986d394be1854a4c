"""What runs on the compute nodes for a Slurm job: one plan job (`SlurmTask`) or the final aggregation
(`AggregateTask`), as submitit callables.

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
from pathlib import Path
from typing import Any

import submitit

from hpcxlt.launch.execute.forced_stop import forced_stop
from hpcxlt.launch.execute.worker import is_preemption, mark_failed, note_requeue, run_job
from hpcxlt.launch.record import set_aggregate_state
from hpcxlt.launch.site.profile import SiteProfile
from hpcxlt.store import RunStore
from hpcxlt.store.rehearsal import rehearsal_path


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
            with forced_stop(self.run_dir, self.job_key):  # a rehearsal's one forced preemption
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
        if not note_requeue(
            self.run_dir,
            self.job_key,
            max_requeues=self.max_requeues,
            reason=f"Slurm job {env.job_id} preempted or at its time limit",
        ):
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
        try:
            return self._aggregate(store)
        finally:
            _rehearsal_report(store)

    def _aggregate(self, store: RunStore) -> int:
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


def _rehearsal_report(store: RunStore) -> None:
    """A rehearsal's last job writes its report (rehearsal.json); a report that cannot be made fails nothing."""
    if not rehearsal_path(store).is_file():
        return
    try:
        from hpcxlt.launch.rehearsal import finish, render

        print(render(finish(store), store.root), flush=True)
    except Exception as err:  # the aggregation's own outcome stands; `hpcxlt status` makes the report again
        print(f"rehearsal report not written: {type(err).__name__}: {err}", flush=True)


def aggregate_launcher(site: SiteProfile) -> list[str]:
    res = site.stage("aggregate")
    return shlex.split(site.mpi_launcher.format(ntasks=res.nodes * res.ntasks_per_node("aggregate")))


class FeederTask:
    """The one-task job at the end of a wave (hpcxlt.launch.slurm.waves): submits the next wave and its feeder."""

    def __init__(self, run_dir: str):
        self.run_dir = str(run_dir)

    def __call__(self) -> int:
        """`hpcxlt resume RUN_DIR --next-wave` (the site the run was submitted with, from its launch record),
        run as the command a user would type: the feeder needs nothing of the submission code in this
        module, so node (what runs in a job) and submission (which pickles these tasks) import only one way."""
        command = [sys.executable, "-m", "hpcxlt", "resume", self.run_dir, "--next-wave"]
        print("running:", shlex.join(command), flush=True)
        return subprocess.run(command, check=True).returncode
