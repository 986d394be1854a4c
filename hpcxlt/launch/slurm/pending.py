"""What a submission or resume has to submit: the jobs neither done nor alive in the queue (pure given squeue)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpcxlt.grid.plan import Job, Plan
from hpcxlt.launch.record import aggregate_state, unfinished_jobs
from hpcxlt.store import RunStore

WAITING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "SPECIAL_EXIT"})


@dataclass(kw_only=True)
class Pending:
    """What a submission (or resume) has to do."""

    jobs: list[Job] = field(default_factory=list)
    """Jobs to submit, in plan order."""
    external: dict[str, str] = field(default_factory=dict)
    """Upstream job key -> Slurm id, for still-queued jobs the new ones must wait for."""
    cancel: list[str] = field(default_factory=list)
    """Slurm ids of queued jobs that wait for a dead upstream id and are resubmitted instead."""
    aggregate: bool = False
    """Whether the aggregation job is submitted."""
    aggregate_external: list[str] = field(default_factory=list)
    """Queued evaluation jobs the aggregation must wait for."""

    cells: int = 0
    """Cells of those jobs that are not done (done cells of a resubmitted eval job are skipped again)."""


def recorded_job_ids(store: RunStore, jobs: list[Job]) -> dict[str, str | None]:
    """Job key -> the Slurm id recorded for its first cell that is not done (None: never submitted)."""
    first = {job.key: next((key for key in job.cells if not store.is_done(key)), None) for job in jobs}
    states = store.states([key for key in first.values() if key is not None])
    return {job: states[key].get("job_id") if key is not None else None for job, key in first.items()}


def pending_work(
    store: RunStore, plan: Plan, alive: dict[str, str], *, with_aggregate: bool, new_only: bool = False
) -> Pending:
    """Jobs that are neither done nor queued, plus what they must wait for. Pure given `alive`.

    new_only: only jobs never submitted (the next wave of a wave-wise submission, hpcxlt.launch.slurm.waves).
    """
    unfinished = unfinished_jobs(store, plan)
    ids = recorded_job_ids(store, unfinished)
    queued = {key: jid for key, jid in ids.items() if jid and jid in alive}  # job key -> its live Slurm id
    out = Pending()
    submit: set[str] = set()
    unfinished_keys = {job.key for job in unfinished}
    for job in unfinished:  # plan order is topological: upstream decisions are made first
        if new_only and (
            ids[job.key] or any(d in unfinished_keys and d not in queued and d not in submit for d in job.deps)
        ):
            continue  # submitted before (or downstream of such a job): left to `hpcxlt resume`
        if job.key not in queued:
            out.jobs.append(job)
            submit.add(job.key)
        elif alive[queued[job.key]] in WAITING_STATES and any(d in submit for d in job.deps):
            out.cancel.append(queued[job.key])  # it waits for an id that will never succeed
            out.jobs.append(job)
            submit.add(job.key)
    out.external = {d: queued[d] for job in out.jobs for d in job.deps if d in queued and d not in submit}
    out.cells = sum(1 for job in out.jobs for key in job.cells if not store.is_done(key))
    if with_aggregate:
        agg = aggregate_state(store)
        agg_id: str | None = agg.get("job_id")
        agg_queued = agg.get("state") != "done" and agg_id in alive
        evals_resubmitted = any(job.stage == "eval" for job in out.jobs)
        if agg_queued and evals_resubmitted and agg_id is not None and alive[agg_id] in WAITING_STATES:
            out.cancel.append(agg_id)
            agg_queued = False
        if agg.get("state") != "done" and not agg_queued:
            out.aggregate = True
            out.aggregate_external = sorted(
                queued[j.key] for j in unfinished if j.stage == "eval" and j.key in queued and j.key not in submit
            )
    return out
