"""What a run has spent so far, beside what its plan estimated: hours per stage and what is left.

    cost_used(store, plan, cfg, executor) -> {stage: {used_hours, used_gpu_hours, estimate_gpu_hours,
                                                      remaining_gpu_hours, cells_done, cells}}

Slurm: every job id any submission gave a stage's cells, through `sacct -D` (each requeued attempt counts:
its hours were spent), wall time x the GPUs it held. Local: each job's wall time from its cells' start
to their done markers (the last attempt; the GPUs of a local run are not recorded: `used_gpu_hours` None). The estimate is `hpcxlt plan`'s (`grid.cost`); what remains
is the estimate's share of the cells not done.
"""

from __future__ import annotations

from typing import Any

from hpcxlt.grid.cost import estimate
from hpcxlt.grid.plan import STAGES, Plan
from hpcxlt.launch.slurm import queue
from hpcxlt.store import RunStore


def cost_used(
    store: RunStore, plan: Plan, cfg, executor: str | None, done_cells: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """`done_cells`: the done cells where the caller has them (status: its own cell states), else looked up."""
    est = {c.stage: c.gpu_hours for c in estimate(cfg, plan)}
    out: dict[str, dict[str, Any]] = {}
    used: dict[str, tuple[float, float | None]] = {stage: (0.0, 0.0) for stage in STAGES}
    if executor == "slurm":
        stage_of = store.cell_states.every_job_stage()
        try:
            usage = queue.usage(stage_of)
        except queue.QueueError:
            usage = {}
        for job_id, spent in usage.items():
            hours, gpu_hours = used[stage_of[job_id]]
            used[stage_of[job_id]] = (hours + spent["hours"], (gpu_hours or 0.0) + spent["gpu_hours"])
    else:
        for job in plan.jobs:
            ends = (job.cells[0], job.cells[-1])  # a job's cells run in order: its first starts it, its last ends it
            infos = [store.done_info(key) for key in ends]
            starts = [store.state(key).get("started") for key in ends]
            finished = [i["finished"] for i in infos if i and "finished" in i]
            started = [s for s in starts if s]
            if finished and started:
                hours, _ = used[job.stage]
                used[job.stage] = (hours + max(0.0, max(finished) - min(started)) / 3600, None)
    done_keys = store.done_keys(cell.key for cell in plan.cells) if done_cells is None else done_cells
    for stage in STAGES:
        cells = plan.stage_cells(stage)
        done = sum(c.key in done_keys for c in cells)
        estimate_h = est.get(stage)
        hours, gpu_hours = used[stage]
        out[stage] = {
            "cells": len(cells),
            "cells_done": done,
            "used_hours": round(hours, 4),
            "used_gpu_hours": None if gpu_hours is None else round(gpu_hours, 4),
            "estimate_gpu_hours": None if estimate_h is None else round(estimate_h, 4),
            "remaining_gpu_hours": None
            if estimate_h is None or not cells
            else round(estimate_h * (len(cells) - done) / len(cells), 4),
        }
    return out


__all__ = ["cost_used"]
