"""What every executor shares: the launch record of a run directory and "what is left to run".

`RUN_DIR/launch.json` says how the run was launched (local or Slurm, and the site profile), so `status`,
`resume` and `cancel` need only the run directory. Standard library only.
"""

from __future__ import annotations

import os
import pwd
import socket
import time
from typing import Any

from hpcxlt.grid.plan import Job, Plan
from hpcxlt.io import read_json, write_json_atomic
from hpcxlt.store import RunStore

EXECUTORS = ("local", "slurm")
AGGREGATE_KEY = "aggregate"
"""Key of the final aggregation job (not a cell of the plan); its state lives in logs/aggregate.state.json."""


def launch_path(store: RunStore):
    return store.launch_path


def read_launch(store: RunStore) -> dict[str, Any] | None:
    """The launch record, or None for a run directory that was never submitted."""
    path = launch_path(store)
    if not path.exists():
        return None
    return store.read_record(
        path,
        "how the run was submitted (executor, site): submit it again with "
        "`hpcxlt submit DIR/config.yaml --run-dir DIR [--site SITE | --local]` "
        "(done cells are kept, queued jobs are found by their ids)",
    )


def write_launch(
    store: RunStore, executor: str, site: dict[str, Any] | None = None, *, aggregate: bool = True
) -> dict[str, Any]:
    """Record how the run is launched; a later submission with another executor replaces the record."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {EXECUTORS}")
    record = read_launch(store) or {}
    history = list(record.get("history", []))
    history.append({"executor": executor, "time": time.time(), "host": socket.gethostname(), "user": _user()})
    record = {
        "executor": executor,
        "site": site,
        "aggregate": aggregate,
        "history": history[-50:],
        **({"waves": record["waves"]} if record.get("waves") else {}),
    }
    write_json_atomic(launch_path(store), record)
    return record


def update_launch(store: RunStore, change) -> dict[str, Any]:
    """Replace the launch record by `change(record)` (callers hold the run directory's lock)."""
    record = change(read_launch(store) or {})
    write_json_atomic(launch_path(store), record)
    return record


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "")


def job_done(store: RunStore, job: Job) -> bool:
    """A job is done when every one of its cells has its done marker."""
    return all(store.is_done(key) for key in job.cells)


def unfinished_jobs(store: RunStore, plan: Plan) -> list[Job]:
    """Jobs with at least one cell not done, in plan (dependency) order."""
    return [job for job in plan.jobs if not job_done(store, job)]


def aggregate_state_path(store: RunStore):
    return store.aggregate_state_path


def aggregate_state(store: RunStore) -> dict[str, Any]:
    path = aggregate_state_path(store)
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return {"state": "pending"}


def set_aggregate_state(store: RunStore, state: str, **fields: Any) -> None:
    current = aggregate_state(store)
    current.update(fields, state=state, updated=time.time())
    write_json_atomic(aggregate_state_path(store), current)
