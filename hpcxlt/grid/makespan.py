"""Makespan of a job DAG on G GPUs: a list scheduler with longest-path-first priority.

Pure and standard library only. Each job needs `gpus` GPUs for `hours` once its `deps` are done. Its
priority is its bottom level (the longest path of hours from its start to the end of the DAG, its own
included: Graham's list scheduling with the critical-path rule, e.g. Kwok & Ahmad 1999). Whenever GPUs
free up, the ready jobs are taken in priority order and each one that fits in the free GPUs starts (a
job that does not fit lets a smaller one behind it start, as Slurm's backfill would).

Bounds that hold for any schedule: wall >= critical path, and wall >= GPU-hours / G.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class DagJob:
    """One job of the DAG."""

    id: str
    gpus: int
    hours: float
    deps: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Makespan:
    wall_hours: float
    """When the last job ends, starting every job as soon as its deps are done and GPUs are free."""
    critical_path_hours: float
    """The longest chain of dependent jobs (wall time with unlimited GPUs)."""
    gpu_hours: float
    """Sum of gpus x hours."""
    gpus: int


def _order(jobs: dict[str, DagJob]) -> list[str]:
    """Topological order (Kahn); raises on unknown deps and cycles."""
    children: dict[str, list[str]] = {key: [] for key in jobs}
    waiting = {}
    for job in jobs.values():
        for dep in job.deps:
            if dep not in jobs:
                raise ValueError(f"job {job.id} depends on unknown job {dep}")
            children[dep].append(job.id)
        waiting[job.id] = len(set(job.deps))
    ready = [key for key, count in waiting.items() if count == 0]
    order = []
    while ready:
        key = ready.pop()
        order.append(key)
        for child in set(children[key]):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(order) != len(jobs):
        raise ValueError(f"the jobs have a dependency cycle among {sorted(set(jobs) - set(order))[:5]}")
    return order


def makespan(jobs: Iterable[DagJob], gpus: int) -> Makespan:
    """Schedule `jobs` on `gpus` GPUs (module docstring)."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    by_id: dict[str, DagJob] = {}
    for job in jobs:
        if job.id in by_id:
            raise ValueError(f"job {job.id} appears twice")
        if not 1 <= job.gpus <= gpus:
            raise ValueError(f"job {job.id} needs {job.gpus} GPUs; the schedule has {gpus}")
        if job.hours < 0:
            raise ValueError(f"job {job.id} has negative hours {job.hours}")
        by_id[job.id] = job
    order = _order(by_id)
    children: dict[str, list[str]] = {key: [] for key in by_id}
    for job in by_id.values():
        for dep in set(job.deps):
            children[dep].append(job.id)
    level: dict[str, float] = {}
    for key in reversed(order):
        level[key] = by_id[key].hours + max((level[c] for c in children[key]), default=0.0)
    critical = max(level.values(), default=0.0)

    rank = {key: i for i, key in enumerate(order)}  # ties: topological order, stable
    waiting = {key: len(set(job.deps)) for key, job in by_id.items()}
    ready = [(-level[k], rank[k], k) for k, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (end, rank, id)
    now, free, wall = 0.0, gpus, 0.0
    while ready or running:
        skipped = []
        while ready and free > 0:
            item = heapq.heappop(ready)
            job = by_id[item[2]]
            if job.gpus <= free:
                free -= job.gpus
                heapq.heappush(running, (now + job.hours, rank[job.id], job.id))
            else:
                skipped.append(item)
        for item in skipped:
            heapq.heappush(ready, item)
        end, _, key = heapq.heappop(running)  # something runs: ready jobs always fit an empty machine
        now = wall = max(wall, end)
        finished = [key]
        while running and running[0][0] <= now:
            finished.append(heapq.heappop(running)[2])
        for key in finished:
            free += by_id[key].gpus
            for child in children[key]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, (-level[child], rank[child], child))
    gpu_hours = sum(job.gpus * job.hours for job in by_id.values())
    return Makespan(wall_hours=wall, critical_path_hours=critical, gpu_hours=gpu_hours, gpus=gpus)
