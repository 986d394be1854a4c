"""Submission in waves, for sites that cap how many jobs a user may have queued (MaxSubmitJobs, a QOS).

Slurm counts every array task against such a limit, and refuses a whole submission that would exceed
it. With the site key `max_queued_jobs`, a submission takes only as many jobs as fit beside what the
user already has queued, keeping one place for a *feeder*: a one-task job that waits (`afterany`) for
this wave's jobs and then runs `hpcxlt resume RUN_DIR --next-wave` on a compute node, which submits the
next wave and its own feeder. No process stays on the login node. A wave holds jobs in plan order
whose upstream jobs are done, queued or in the same wave, so every dependency can be expressed; the
aggregation job goes with the last wave. `--next-wave` only submits jobs never submitted before: a job
that failed waits for `hpcxlt resume` (or for self-healing), instead of being resubmitted by every wave.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from hpcxlt.grid.plan import Job
from hpcxlt.launch.slurm.pending import Pending
from hpcxlt.store import RunStore


def split_wave(store: RunStore, pending: Pending, room: int) -> tuple[Pending, int]:
    """(the wave that fits in `room` queue places, how many jobs wait for later waves)."""
    kept: list[Job] = []
    taken: set[str] = set()
    waiting = {job.key for job in pending.jobs}  # an upstream job outside this set is done or queued
    for job in pending.jobs:
        if len(kept) >= room:
            break
        ready = all(dep in taken or dep not in waiting for dep in job.deps)
        if ready:
            kept.append(job)
            taken.add(job.key)
    deferred = len(pending.jobs) - len(kept)
    aggregate = pending.aggregate and deferred == 0 and len(kept) < room
    external = {dep: jid for dep, jid in pending.external.items() if any(dep in job.deps for job in kept)}
    cells = sum(1 for job in kept for key in job.cells if not store.is_done(key))
    wave = replace(
        pending,
        jobs=kept,
        external=external,
        aggregate=aggregate,
        cells=cells,
        aggregate_external=pending.aggregate_external if aggregate else [],
    )
    return wave, deferred + (1 if pending.aggregate and not aggregate else 0)


def record_wave(launch: dict[str, Any], *, jobs: int, deferred: int, feeder: str | None) -> dict[str, Any]:
    """launch.json's 'waves' list with this wave appended."""
    waves = list(launch.get("waves", []))
    waves.append(
        {"wave": len(waves) + 1, "jobs": jobs, "deferred": deferred, "feeder": feeder, "submitted": time.time()}
    )
    return {**launch, "waves": waves}
