"""The rehearsal's forced preemption: a training job named in rehearsal.json (`settings.preempt`) stops once,
after its first optimizer step and that step's checkpoint, exactly as a preemption signal stops it; its
launcher then requeues it (Slurm: submitit's SIGUSR2 hand-over; the local executor: `EXIT_REQUEUE`) and the
next attempt resumes from the checkpoint. `hpcxlt submit --rehearse` uses it to rehearse one requeue per
training stage (docs/rehearsal.md).

How: for that attempt only, `hpcxlt.train.preemption.request_stop` raises the training loop's signal flag as
the loop installs it, as if Slurm's SIGUSR2 had arrived just before the first step. The loop saves at the next step boundary and raises `Preempted`: every line that
runs after is the real preemption path. Raising the flag this way, rather than sending a signal from a
timer, makes the stop independent of the machine's speed (a signal that comes after the loop has ended
would kill a local job or requeue it without its checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator

from hpcxlt.store import RunStore
from hpcxlt.store.rehearsal import preempts
from hpcxlt.train import preemption

log = logging.getLogger(__name__)


def due(store: RunStore, job_key: str) -> bool:
    """True for a job the rehearsal preempts whose training cell has not been preempted yet."""
    if not preempts(store, job_key):
        return False
    key = store.load_plan().job(job_key).cells[0]
    if store.is_done(key):
        return False
    path = store.train_log_path(key)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("event") == "preempted":
                    return False
    return True


@contextlib.contextmanager
def forced_stop(run_dir: str | os.PathLike, job_key: str) -> Iterator[bool]:
    """Around `run_job`: preempt this attempt of the job if the rehearsal says so (yields whether it does)."""
    store = RunStore(run_dir)
    if not due(store, job_key):
        yield False
        return
    log.warning("rehearsal: %s preempts itself once, after its first step and checkpoint", job_key)
    preemption.request_stop(signal.SIGUSR2)
    yield True
