"""Thin wrappers around squeue, sacct, scancel and scontrol (no submitit: `status` stays light).

Job ids are strings as Slurm prints them: '123' for a plain job, '123_4' for task 4 of array 123.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable

# Job states in which a job still holds or waits for resources (squeue(1), JOB STATE CODES).
ALIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "CONFIGURING",
        "COMPLETING",
        "SIGNALING",
        "STAGE_OUT",
        "SPECIAL_EXIT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})

_ARRAY_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


class QueueError(RuntimeError):
    """A Slurm client command failed."""


def available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("sbatch") is not None


# What Slurm clients print while the controller or the accounting daemon cannot be reached (a restart,
# a fail-over, an overloaded controller): worth waiting for, unlike a refused request.
TRANSIENT = re.compile(
    r"unable to contact slurm controller|connect(ion)? (failure|refused)|socket timed out|"
    r"zero bytes were transmitted|slurm backup controller in standby|problem talking to the database|"
    r"resource temporarily unavailable|communication connection failure|unable to connect to slurmdbd",
    re.IGNORECASE,
)
RETRY_S_ENV = "HPCXLT_SLURM_RETRY_S"
DEFAULT_RETRY_S = 180.0
"""How long Slurm client calls keep retrying transient errors (override: env HPCXLT_SLURM_RETRY_S)."""


# For sbatch only what proves nothing was submitted: a timeout after the request went out may have
# queued the job, and a second sbatch would queue it twice.
NOT_SUBMITTED = re.compile(
    r"unable to contact slurm controller|connect(ion)? (failure|refused)|"
    r"resource temporarily unavailable",
    re.IGNORECASE,
)


def is_transient(message: str) -> bool:
    """True for errors that mean "the controller or slurmdbd is unreachable right now"."""
    return bool(TRANSIENT.search(message or ""))


def retrying(call, what: str, *, budget_s: float | None = None, sleep=time.sleep, transient=is_transient):
    """Run `call()`; while it raises an error whose text is transient (`is_transient`), wait 1, 2, 4 ...
    (at most 30) seconds and try again, saying what it waits for, for up to `budget_s` seconds in all."""
    budget = float(os.environ.get(RETRY_S_ENV, DEFAULT_RETRY_S)) if budget_s is None else budget_s
    waited, delay = 0.0, 1.0
    while True:
        try:
            return call()
        except Exception as err:
            if not transient(str(err)) or waited + delay > budget:
                raise
            print(
                f"hpcxlt: {what}: Slurm is unreachable ({str(err).strip().splitlines()[-1][:200]}); "
                f"retrying in {delay:.0f} s ({waited:.0f} of {budget:.0f} s waited)",
                file=sys.stderr,
                flush=True,
            )
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)


def _run_once(cmd: list[str], timeout: float) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise QueueError(f"`{cmd[0]}` is not installed: is this a Slurm login node?") from None
    except subprocess.TimeoutExpired:
        raise QueueError(f"`{' '.join(cmd[:3])} ...` timed out after {timeout:.0f} s (socket timed out)") from None
    if proc.returncode != 0:
        raise QueueError(f"`{' '.join(cmd[:4])} ...` failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return proc.stdout


def run_client(cmd: list[str], *, timeout: float = 60) -> str:
    """Run a Slurm client command (sbatch, squeue, ...) and return its output; transient failures are
    retried (`retrying`), others raise QueueError with the tool's message."""
    return retrying(lambda: _run_once(cmd, timeout), cmd[0])


_run = run_client  # the name this module's own calls use


def expand_ids(text: str) -> list[str]:
    """'123_[0-2,5%2]' -> ['123_0', '123_1', '123_2', '123_5']; other ids come back unchanged."""
    match = _ARRAY_RANGE.match(text.strip())
    if not match:
        return [text.strip()]
    base, ranges = match.groups()
    out: list[str] = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        out.extend(f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1))
    return out


def _user() -> str:

    return pwd.getpwuid(os.getuid()).pw_name


def alive_jobs() -> dict[str, str]:
    """Job id -> state for every job of this user that squeue still lists (one entry per array task)."""
    out = _run(["squeue", "-h", "-r", "-u", _user(), "-o", "%i|%T"])
    states: dict[str, str] = {}
    for line in out.splitlines():
        if "|" not in line:
            continue
        job, state = line.split("|", 1)
        if state.strip() not in ALIVE_STATES:  # e.g. CANCELLED, shown for a few seconds after scancel
            continue
        for jid in expand_ids(job):
            states[jid] = state.strip()
    return states


def held_jobs() -> set[str]:
    """Ids of this user's jobs held by a user hold (sbatch --hold, scontrol hold)."""
    out = _run(["squeue", "-h", "-r", "-u", _user(), "-t", "PD", "-o", "%i|%r"])
    held: set[str] = set()
    for line in out.splitlines():
        job, _, reason = line.partition("|")
        if reason.strip() == "JobHeldUser":
            held.update(expand_ids(job))
    return held


def array_root(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def accounting(job_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """sacct's view (state, start, end, elapsed, node list, exit code) of jobs and array tasks.

    Queried by array root id, so one call covers a whole array; condensed rows of pending array tasks
    ('123_[4-9]') are expanded.
    """
    roots = sorted({array_root(j) for j in job_ids if j})
    info: dict[str, dict[str, str]] = {}
    fields = ["JobID", "State", "Start", "End", "Elapsed", "NodeList", "ExitCode"]
    for start in range(0, len(roots), 500):
        chunk = roots[start : start + 500]
        out = _run(["sacct", "-X", "-n", "-P", "-o", ",".join(fields), "-j", ",".join(chunk)])
        for line in out.splitlines():
            values = line.split("|")
            if len(values) != len(fields):
                continue
            row = dict(zip(fields, values))
            row["State"] = row["State"].split()[0] if row["State"] else "UNKNOWN"  # 'CANCELLED by 0'
            for jid in expand_ids(row["JobID"]):
                info[jid] = row
    return info


def usage(job_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """Job id -> {'hours': wall hours, 'gpu_hours': wall hours x GPUs} over every attempt of it (sacct -D
    lists each requeued attempt: a preempted attempt's hours were spent too)."""
    roots = sorted({array_root(j) for j in job_ids if j})
    wanted = set(job_ids)
    out: dict[str, dict[str, float]] = {}
    fields = ["JobID", "ElapsedRaw", "AllocTRES"]
    for start in range(0, len(roots), 500):
        chunk = roots[start : start + 500]
        text = _run(["sacct", "-X", "-D", "-n", "-P", "-o", ",".join(fields), "-j", ",".join(chunk)])
        for line in text.splitlines():
            values = line.split("|")
            if len(values) != len(fields) or not values[1].isdigit():
                continue
            job, seconds, tres = values[0], int(values[1]), values[2]
            gpus = sum(
                int(item.split("=")[1])
                for item in tres.split(",")
                if item.split("=")[0] in ("gres/gpu", "gpu") and item.split("=")[1].isdigit()
            )
            for jid in expand_ids(job):
                if jid in wanted:
                    entry = out.setdefault(jid, {"hours": 0.0, "gpu_hours": 0.0})
                    entry["hours"] += seconds / 3600
                    entry["gpu_hours"] += seconds * gpus / 3600
    return out


def cancel(job_ids: Iterable[str], *, signal: str | None = None) -> None:
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), 1000):
        cmd = ["scancel"] + ([f"--signal={signal}"] if signal else []) + ids[start : start + 1000]
        _run(cmd)


def release(job_ids: Iterable[str]) -> None:
    """Release held jobs (`scontrol release` takes a comma-separated list)."""
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), 1000):
        _run(["scontrol", "release", ",".join(ids[start : start + 1000])])
