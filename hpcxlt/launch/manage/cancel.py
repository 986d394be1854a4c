"""Cancel what a run still has in flight: its alive Slurm jobs, or the local process running it."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from hpcxlt.grid.plan import Plan
from hpcxlt.launch.record import aggregate_state, read_launch
from hpcxlt.launch.slurm import queue
from hpcxlt.store import RunStore


def cancel_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """scancel the run's alive jobs (Slurm) or SIGTERM its running local process; return what was stopped."""
    store = RunStore(run_dir)
    plan = store.load_plan()
    executor = (read_launch(store) or {}).get("executor")
    if executor == "slurm":
        # under the run directory's lock: a resume that is submitting finishes (and records its job ids) first
        with store.lock("cancel"):
            # every cell, done ones too: a queued job whose cells are all done (finished by another job, or
            # marked by hand) would still start and take a slot, and `cancel` promises an empty queue
            states = store.states([cell.key for cell in plan.cells], done_details=False)
            # a COMPLETING job is ending already (e.g. cancelled a moment ago, in its KillWait): nothing to cancel
            alive = {job: state for job, state in queue.alive_jobs().items() if state != "COMPLETING"}
            ids = {s["job_id"] for s in states.values() if s.get("job_id") in alive}
            agg = aggregate_state(store).get("job_id")
            if agg in alive:
                ids.add(agg)
            cells = sum(1 for s in states.values() if s.get("job_id") in ids and s["state"] != "done")
            if ids:
                queue.cancel(ids)
        return {"executor": executor, "jobs": sorted(ids), "cells": cells}
    states = _unfinished_states(store, plan)
    # a local run holds the lock while it runs: stopping it is a signal, never a wait for that lock
    host, pids, cells = socket.gethostname(), set(), 0
    for s in states.values():
        if s.get("state") == "running" and s.get("host") == host and s.get("pid") and s["pid"] != os.getpid():
            try:
                os.kill(int(s["pid"]), 0)
            except ProcessLookupError:
                continue
            pids.add(int(s["pid"]))
            cells += 1
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for key, s in states.items():  # what was stopped says so (it read as 'pending, interrupted' before)
        if s.get("state") == "running" and s.get("pid") and int(s["pid"]) in pids:
            store.set_state(key, "cancelled", reason="stopped by `hpcxlt cancel`", cancelled=time.time())
    return {"executor": executor or "local", "jobs": [str(p) for p in sorted(pids)], "cells": cells}


def _unfinished_states(store: RunStore, plan: Plan) -> dict[str, dict[str, Any]]:
    """The states of the cells that are not done."""
    keys = [cell.key for cell in plan.cells]
    done = store.done_keys(keys)
    return store.states([key for key in keys if key not in done])
