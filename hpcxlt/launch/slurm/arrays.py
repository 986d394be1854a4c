"""Grouping plan jobs into Slurm arrays that line up element-wise, and their --dependency strings (pure).

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
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hpcxlt.grid.plan import STAGES, Job, Plan
from hpcxlt.launch.record import AGGREGATE_KEY
from hpcxlt.launch.slurm import queue


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


def build_arrays(
    plan: Plan, jobs: list[Job], *, external: dict[str, str] | None = None, max_array_size: int
) -> list[ArraySpec]:
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
    for stage, level in (
        (stage, level) for stage in STAGES for level in sorted({wave[j.key] for j in jobs if j.stage == stage})
    ):
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
                add(stage, [j.key for j in group[start : start + max_array_size]], label=label)
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
            add(
                stage,
                [job.key],
                label=_stage_label(plan, job),
                after=tuple(position[d] for d in job.deps if d in submit_keys),
                external=tuple(external[d] for d in job.deps if d in external),
            )
    return specs


def aggregate_spec(specs: list[ArraySpec], external_evals: list[str]) -> ArraySpec:
    return ArraySpec(
        name="aggregate",
        stage="aggregate",
        jobs=(AGGREGATE_KEY,),
        after_all=tuple(s.name for s in specs if s.stage == "eval"),
        external=tuple(external_evals),
        label="tables + plots",
    )


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
