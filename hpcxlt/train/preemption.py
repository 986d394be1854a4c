"""Preemption: the signals that ask a training run to stop, and how it says "checkpoint saved, run me again".

Slurm sends SIGUSR1/SIGUSR2 ahead of a preemption or the time limit (`--signal`), and SIGTERM when it
cancels or requeues; the loop turns each into a flag, saves at the next step boundary and raises
`Preempted`; the launch layer exits with `EXIT_PREEMPTED` so the job is requeued. Standard library only,
so the launch layer can catch `Preempted` without importing torch.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
EXIT_PREEMPTED = 75
"""Exit status for 'checkpoint saved, run me again' (EX_TEMPFAIL); launchers map it to a requeue."""


class Preempted(Exception):
    """A signal asked the run to stop; a complete checkpoint of `step` is on disk and a rerun resumes from it."""

    def __init__(self, *, step: int, checkpoint: Path, signum: int):
        self.step, self.checkpoint, self.signum = step, checkpoint, signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint}")


class _SignalFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = signum
        log.warning("received %s: will checkpoint at the next step boundary and stop", signal.Signals(signum).name)


_requested: list[int] = []


def request_stop(signum: int = signal.SIGUSR2) -> None:
    """Make the next training loop of this process stop at its first step boundary as if `signum` had arrived
    just before it: checkpoint, `Preempted`, requeue. The rehearsal's forced requeue (launch/execute/forced_stop.py):
    the real preemption path, at a point that does not depend on the machine's speed."""
    _requested.append(signum)


@contextmanager
def preemption_signals() -> Iterator[_SignalFlag]:
    """Turn SIGUSR1/SIGUSR2/SIGTERM into a flag for the duration of the loop; restore the old handlers after."""
    flag = _SignalFlag()
    if _requested:
        flag(_requested.pop(), None)
    previous = {}
    try:
        for sig in PREEMPT_SIGNALS:
            previous[sig] = signal.signal(sig, flag)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
