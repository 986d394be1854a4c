"""The local executor (the embedded default): run a plan's jobs in dependency order, each in a process of
its own, as a Slurm job has.

Jobs run in plan order, which is already a topological order (intermediate -> target -> eval). Done
jobs are skipped; a job that fails marks its cells failed (with its log file) and every job
downstream of it is skipped and reported, while unrelated jobs go on. Ctrl-C or SIGTERM stops at once
(training saves a checkpoint at the next step boundary on SIGTERM) and leaves a run directory that
`hpcxlt resume` finishes: cells that were running go back to pending (or stay cancelled, after
`hpcxlt cancel`).

Why a process per job: what one training cell allocates is not all given back to the operating system
(allocator caches, DeepSpeed's buffers, CUDA's context), so one process running job after job grew until
the kernel killed it (XLM-R Large: 19 GB for one cell alone, 24 GB when it came second). A job's process
(a fork of multiprocessing's fork server, which imported the heavy libraries once; `python -m
hpcxlt.launch.execute.local RUN_DIR JOB` is the same by hand) runs the same worker code as on a node; each done marker
records the peak resident memory of the process that finished the cell (`peak_rss_gib`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hpcxlt.launch.execute.forced_stop import forced_stop
from hpcxlt.launch.execute.worker import is_preemption, note_requeue, run_job
from hpcxlt.launch.record import job_done, unfinished_jobs
from hpcxlt.store import RunStore


@dataclass(kw_only=True)
class LocalReport:
    """What one local run did."""

    ran: list[str] = field(default_factory=list)
    """Keys of the jobs that ran to completion."""
    done_before: list[str] = field(default_factory=list)
    """Keys of the jobs that were done already and were skipped."""
    failed: dict[str, str] = field(default_factory=dict)
    """Job key -> error text, for the jobs that raised."""
    blocked: dict[str, str] = field(default_factory=dict)
    """Job key -> the failed upstream job it waited for (not run)."""
    interrupted: str | None = None
    """Job that was running when Ctrl-C or a signal stopped the run, else None."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and self.interrupted is None


def job_log_path(store: RunStore, job_key: str) -> Path:
    return store.local_log_path(job_key)


class _JobLog:
    """Copy this process's log records into the job's log file while the job runs."""

    def __init__(self, path: Path):
        self.path = path
        self.handler: logging.Handler | None = None
        self._old_level: int | None = None

    def __enter__(self) -> _JobLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self.handler)
        if root.level > logging.INFO:
            self._old_level = root.level
            root.setLevel(logging.INFO)
        else:
            self._old_level = None
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        if exc[0] is not None and exc[0] is not KeyboardInterrupt:
            root.error("job failed", exc_info=exc)
        assert self.handler is not None
        root.removeHandler(self.handler)
        self.handler.close()
        if self._old_level is not None:
            root.setLevel(self._old_level)


def run_local(run_dir: str | os.PathLike, *, progress: bool = True, out: TextIO | None = None) -> LocalReport:
    """Run every unfinished job of the run directory here, in dependency order; return what happened."""
    out = sys.stderr if out is None else out
    store = RunStore(run_dir)
    plan = store.load_plan()
    report = LocalReport()
    todo = unfinished_jobs(store, plan)
    report.done_before = [job.key for job in plan.jobs if job_done(store, job)]
    blocked_by: dict[str, str] = {}  # job key -> failed (or blocked) upstream job
    bar = None
    if progress:
        bar = tqdm(total=len(todo), unit="job", desc="hpcxlt", file=out, dynamic_ncols=True)
    try:
        for job in todo:
            if bar is not None:
                bar.set_postfix_str(job.key, refresh=True)
            root_cause = next((blocked_by[d] for d in job.deps if d in blocked_by), None)
            if root_cause is not None:
                blocked_by[job.key] = root_cause
                report.blocked[job.key] = root_cause
            else:
                _run_one(store, job.key, report, blocked_by)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        report.interrupted = report.interrupted or "interrupted"
    finally:
        if bar is not None:
            bar.close()
    return report


INTERRUPTED = 130
"""Exit status of a job's process that stopped on Ctrl-C or SIGTERM (its cells went back to pending)."""
EXIT_REQUEUE = 75
"""Exit status of a job's process preempted by SIGUSR1/SIGUSR2 with its checkpoint saved (the training loop's
EXIT_PREEMPTED, EX_TEMPFAIL): the executor runs it again, which resumes from that checkpoint."""
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
LOCAL_MAX_REQUEUES = 3
"""Requeues without progress before a local job's cells are marked failed (a site's max_requeues on Slurm)."""


_CONTEXT = None


def _job_context():
    """Where jobs' processes come from: multiprocessing's fork server, started once (a fresh interpreter that
    imports torch and transformers and runs nothing), each job a fork of it. Forking this process instead
    hangs a job in OpenMP's barrier once this process has run torch itself (GNU OpenMP is not fork-safe: a
    test that trained in-process did), and a fresh interpreter per job spends about 4 s on imports (4
    minutes over the demo's 62 jobs)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["torch", "transformers", "hpcxlt.launch.execute.worker"])
    return _CONTEXT


def _job_process(run_dir: str, key: str) -> None:
    sys.exit(run_job_here(run_dir, key))


def _run_one(store: RunStore, key: str, report: LocalReport, blocked_by: dict[str, str]) -> None:
    """Run one job in a process of its own (a fork of this one) and wait for it; Ctrl-C reaches it too (one
    process group), a SIGTERM to this process is passed on to it."""
    child = _job_context().Process(target=_job_process, args=(str(store.root), key), name=f"hpcxlt-{key}")
    child.start()

    def pass_on(signum, frame):  # `kill` of the local run: the job checkpoints and stops, then so does the run
        if child.pid is not None:
            os.kill(child.pid, signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, pass_on)
    try:
        child.join()
    except KeyboardInterrupt:
        child.join()  # it saves a checkpoint at the next step boundary, then leaves
        report.interrupted = key
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = child.exitcode if child.exitcode is not None else 1
    if code == EXIT_REQUEUE:  # preempted with its checkpoint saved (and counted): run it again, as Slurm requeues
        _run_one(store, key, report, blocked_by)
        return
    if code == 0:
        report.ran.append(key)
        return
    if code == INTERRUPTED or code < 0:  # stopped (hpcxlt cancel signals the job's own process)
        report.interrupted = key
        raise KeyboardInterrupt
    job = store.load_plan().job(key)
    error = next((store.state(k).get("error") for k in job.cells if store.state(k).get("error")), None)
    report.failed[key] = error or f"the job's process exited with status {code} (log: {job_log_path(store, key)})"
    blocked_by[key] = key


def run_job_here(run_dir: str | os.PathLike, key: str) -> int:
    """The job's own process: run it with the worker (as on a node) and say how it ended in the exit status."""
    store = RunStore(run_dir)
    log_path = job_log_path(store, key)
    try:
        with _JobLog(log_path), forced_stop(store.root, key):  # forced_stop: a rehearsal's one forced preemption
            run_job(store.root, key, job_id=f"local:{os.getpid()}", log_path=str(log_path))
    except KeyboardInterrupt:
        _back_to_pending(store, key, "interrupted (Ctrl-C)")
        return INTERRUPTED
    except Exception as err:
        if is_preemption(err) and getattr(err, "signum", None) in REQUEUE_SIGNALS:
            # a preemption signal (Slurm's, or a rehearsal's forced one): requeued, within max_requeues
            if note_requeue(store.root, key, max_requeues=LOCAL_MAX_REQUEUES, reason=str(err)):
                return EXIT_REQUEUE
            return 1
        if is_preemption(err):  # SIGTERM during training: checkpoint saved, stop like Ctrl-C
            _back_to_pending(store, key, str(err))
            return INTERRUPTED
        return 1  # the worker marked the cells failed, with the error and the log
    return 0


def _back_to_pending(store: RunStore, job_key: str, reason: str) -> None:
    for key in store.load_plan().job(job_key).cells:
        if not store.is_done(key) and store.state(key).get("state") != "cancelled":  # `hpcxlt cancel` said so
            store.set_state(key, "pending", reason=reason)


if __name__ == "__main__":
    sys.exit(run_job_here(sys.argv[1], sys.argv[2]))
