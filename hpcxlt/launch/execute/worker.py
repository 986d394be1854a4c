"""What runs on a node for one job of the plan (or in this process under the local executor).

`run_job(run_dir, job_key)` is safe to call any number of times: everything it needs is looked up in
the run directory (config, plan, done markers, checkpoints), so a requeued, resumed or duplicated job
never redoes finished work. Training cells resume from their newest complete checkpoint by
themselves (`hpcxlt.train.run.train_cell`); evaluation cells are marked done one by one.

State written here (rank 0 only, so N ranks do not race on one file):
  running   when the job starts (job id, host, pid, log path, attempt number)
  failed    on a real error (error text, traceback tail, log path); the error is re-raised
  submitted after a preemption or time limit, by `note_requeue`, when the job goes back to the queue;
            past `max_requeues` the cells are marked failed instead.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from typing import Any

from hpcxlt.grid.plan import Job
from hpcxlt.launcher_env import DistError, launched_world
from hpcxlt.store import RunStore
from hpcxlt.train.preemption import Preempted

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """A job cannot run as asked (unknown key, upstream work missing)."""


def is_preemption(err: BaseException) -> bool:
    """True for the training loop's `Preempted`: a checkpoint is on disk and a rerun continues from it."""
    return isinstance(err, Preempted)


def _rank() -> int:

    try:
        launched = launched_world()
    except DistError:
        return 0
    return 0 if launched is None else launched[0]


def _train(cfg, cell, store) -> None:
    from hpcxlt.train.run import train_cell  # heavy: numpy (via hpcxlt.train.streams) + torch, wandb

    train_cell(cfg, cell, store)


def _evaluate(cfg, cells, store, job_key) -> None:
    from hpcxlt.evaluate.eval_job import evaluate_cells  # heavy: torch

    evaluate_cells(cfg, cells, store, job_key=job_key)


def check_upstream(store: RunStore, plan, job: Job) -> None:
    """Raise JobError naming the upstream jobs whose cells are not done yet."""
    missing = []
    for dep in job.deps:
        try:
            upstream = plan.job(dep)
        except KeyError:
            raise JobError(f"job {job.key} depends on {dep!r}, which is not a job of {store.root}/plan.json") from None
        not_done = [key for key in upstream.cells if not store.is_done(key)]
        if not_done:
            states = sorted({store.state(key).get("state", "pending") for key in not_done})
            missing.append(f"{dep} ({'/'.join(states)})")
    if missing:
        raise JobError(
            f"job {job.key} cannot start: upstream job(s) not done: {', '.join(missing)}; "
            f"see `hpcxlt status {store.root}` and finish them with `hpcxlt resume {store.root}`"
        )


def run_job(
    run_dir: str | os.PathLike, job_key: str, *, job_id: str | None = None, log_path: str | None = None
) -> dict[str, Any]:
    """Run the cells of one plan job that are not done yet; return {'job', 'ran', 'skipped'}.

    Raises JobError when upstream work is missing, re-raises the training loop's `Preempted` untouched
    (a checkpoint is on disk; the caller requeues or stops), and re-raises any other error after
    marking the job's unfinished cells failed with the error and `log_path`.
    """
    store = RunStore(run_dir)
    cfg = store.load_config()
    plan = store.load_plan()
    try:
        job = plan.job(job_key)
    except KeyError:
        raise JobError(f"{job_key!r} is not a job of {store.plan_path}") from None
    todo = [key for key in job.cells if not store.is_done(key)]
    skipped = [key for key in job.cells if key not in todo]
    if not todo:
        log.info("job %s: every cell is done already, nothing to do", job_key)
        return {"job": job_key, "ran": [], "skipped": skipped}
    check_upstream(store, plan, job)

    main = _rank() == 0
    if main:
        for key in todo:
            attempts = int(store.state(key).get("attempts", 0)) + 1
            store.set_state(
                key,
                "running",
                job_id=job_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                log=log_path,
                attempts=attempts,
                started=time.time(),
                error=None,
            )
    cells = [plan.cell(key) for key in todo]
    try:
        if job.stage in ("intermediate", "target"):
            _train(cfg, cells[0], store)
        elif job.stage == "eval":
            _evaluate(cfg, cells, store, job.key)
        else:  # pragma: no cover - plan.STAGES is closed
            raise JobError(f"job {job_key}: unknown stage {job.stage!r}")
    except Exception as err:
        if is_preemption(err):
            raise
        if main:
            mark_failed(store, todo, err, log_path)
        raise
    if main:
        unfinished = [key for key in todo if not store.is_done(key)]
        if unfinished:
            error = JobError(f"job {job_key} returned but left cells without a done marker: {', '.join(unfinished)}")
            mark_failed(store, unfinished, error, log_path)
            raise error
    return {"job": job_key, "ran": todo, "skipped": skipped}


def mark_failed(store: RunStore, keys: list[str], err: BaseException, log_path: str | None) -> None:
    """Mark the cells that are not done failed, with the error, the end of its traceback and the log path."""
    text = f"{type(err).__name__}: {err}"
    tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])[-2000:]
    for key in keys:
        if not store.is_done(key):
            store.set_state(key, "failed", error=text, traceback=tail, log=log_path, failed=time.time())


def note_requeue(run_dir: str | os.PathLike, job_key: str, *, max_requeues: int, reason: str) -> bool:
    """Count one more requeue of a job; True while within `max_requeues`, else mark its cells failed.

    The count lives in the cells' state (`requeues`), so it survives the requeue itself and covers
    requeues whatever triggered them. `hpcxlt resume` resets it when it resubmits a job.
    """
    store = RunStore(run_dir)
    job = store.load_plan().job(job_key)
    todo = [key for key in job.cells if not store.is_done(key)]
    if not todo:
        return True
    count = max(int(store.state(key).get("requeues", 0)) for key in todo)
    # a requeue after progress (a newer checkpoint, more cells done) does not count: a preemptible job
    # that keeps advancing is never failed for being preempted often, one that never does is
    mark = _progress(store, job)
    if mark > max(int(store.state(key).get("progress", -1)) for key in todo):
        count = 0
    if count >= max_requeues:
        err = JobError(
            f"{reason}; the job was requeued {count} times already (max_requeues={max_requeues} in the site "
            "profile): raise max_requeues or the stage's time limit, then `hpcxlt resume`"
        )
        mark_failed(store, todo, err, store.state(todo[0]).get("log"))
        return False
    for key in todo:
        store.set_state(key, "submitted", requeues=count + 1, requeued=time.time(), reason=reason, progress=mark)
    return True


def _progress(store: RunStore, job: Job) -> int:
    """How far a job has come: its training cell's newest finished checkpoint step, or its done cells.

    This runs inside submitit's SIGUSR2 handler, possibly while the main thread is still importing torch:
    it reads folder names only and imports nothing (a torch import from a signal handler in the middle
    of another torch import crashed the process with SIGSEGV in the soak)."""
    if job.stage in ("intermediate", "target"):
        root = store.checkpoints_dir(job.cells[0])
        steps = (
            [
                int(p.name[len("step-") :])
                for p in root.glob("step-*")
                if p.name[len("step-") :].isdigit() and (p / "complete.json").is_file()
            ]
            if root.is_dir()
            else []
        )
        return max(steps, default=0)
    return sum(1 for key in job.cells if store.is_done(key))
