"""The state of a run: recorded cell states reconciled with what the scheduler says.

A cell's recorded state can lag reality: a job killed by scancel, a node failure or a time limit never
writes 'failed'. For Slurm runs the queue (squeue) tells which jobs are still alive and accounting
(sacct) how dead ones ended; for local runs a 'running' cell whose process is gone was interrupted.
Standard library only (no submitit).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from hpcxlt.grid.plan import STAGES
from hpcxlt.launch.record import aggregate_state, read_launch
from hpcxlt.launch.slurm import queue
from hpcxlt.store import RunStore

REPORT_STATES = ("pending", "submitted", "running", "done", "failed", "cancelled")
_RUNNING_QUEUE = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING"})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: str | os.PathLike | RunStore, *, use_queue: bool = True) -> dict[str, Any]:
    """Counts per state (overall and per stage), the failed cells with their logs, the aggregation state."""
    store = run_dir if isinstance(run_dir, RunStore) else RunStore(run_dir)
    cfg = store.load_config()
    plan = store.load_plan()
    launch = read_launch(store) or {}
    executor = launch.get("executor")
    states = store.states([cell.key for cell in plan.cells], done_details=False)  # a done cell: its state alone

    alive: dict[str, str] = {}
    acct: dict[str, dict[str, str]] = {}
    queue_info: dict[str, Any] = {"checked": False, "error": None}
    if executor == "slurm" and use_queue:
        try:
            alive = queue.alive_jobs()
            gone: set[str] = {
                s["job_id"]
                for s in states.values()
                if s["state"] in ("submitted", "running") and s.get("job_id") and s["job_id"] not in alive
            }
            acct = queue.accounting(gone) if gone else {}
            queue_info["checked"] = True
        except queue.QueueError as err:
            queue_info["error"] = str(err)

    host = socket.gethostname()
    unreadable = store.unreadable_records(plan, {key for key, s in states.items() if s["state"] == "done"})
    cells: dict[str, dict[str, Any]] = {}
    for cell in plan.cells:
        rec = states[cell.key]
        state, note = rec.get("state", "pending"), None
        jid = rec.get("job_id")
        if state != "done" and queue_info["checked"] and jid:
            if jid in alive:
                state = "running" if alive[jid] in _RUNNING_QUEUE else "submitted"
            elif state in ("submitted", "running"):
                slurm_state = acct.get(jid, {}).get("State", "UNKNOWN")
                note = f"Slurm job {jid} ended {slurm_state}"
                if slurm_state in queue.FAILED_STATES or slurm_state == "COMPLETED":
                    state = "failed"
                else:
                    state = "cancelled"
        if cell.key in unreadable:
            state, note = (
                "failed",
                f"done, but its record cannot be read ({unreadable[cell.key]}): `hpcxlt resume` evaluates it again",
            )
        elif state == "running" and executor == "local" and rec.get("host") == host and rec.get("pid"):
            if not _pid_alive(int(rec["pid"])):
                state, note = "pending", "interrupted (its process is gone); `hpcxlt resume` continues it"
        cells[cell.key] = {
            "stage": cell.stage,
            "state": state,
            "note": note,
            "job_id": jid,
            "log": rec.get("log"),
            "error": rec.get("error"),
        }

    counts = {s: 0 for s in REPORT_STATES}
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        stage_counts = {s: 0 for s in REPORT_STATES}
        keys = [c.key for c in plan.cells if c.stage == stage]
        for key in keys:
            stage_counts[cells[key]["state"]] += 1
            counts[cells[key]["state"]] += 1
        stages[stage] = {"cells": len(keys), "jobs": len(plan.stage_jobs(stage)), "counts": stage_counts}
    agg = aggregate_state(store)
    if agg.get("state") == "pending" and store.tables_json.is_file():
        # a local run (or `hpcxlt aggregate` by hand) writes the tables without a job's state file
        agg = {"state": "done", "tables": str(store.tables_json), "finished": store.tables_json.stat().st_mtime}
        newest = max((p.stat().st_mtime for p in store.result_files()), default=0.0)
        if newest > agg["finished"]:
            agg["note"] = "records were written after the tables: `hpcxlt aggregate` brings them up to date"
    if queue_info["checked"] and agg.get("job_id") and agg.get("state") in ("submitted", "running"):
        if agg["job_id"] in alive:
            agg["state"] = "running" if alive[agg["job_id"]] in _RUNNING_QUEUE else "submitted"
        else:
            ended = queue.accounting([agg["job_id"]]).get(agg["job_id"], {}).get("State", "UNKNOWN")
            agg["state"] = "failed" if ended in queue.FAILED_STATES or ended == "COMPLETED" else "cancelled"
            agg["note"] = f"Slurm job {agg['job_id']} ended {ended}"
    failed = [
        {
            "key": key,
            "stage": info["stage"],
            "error": info["error"] or info["note"],
            "log": info["log"],
            "job_id": info["job_id"],
        }
        for key, info in cells.items()
        if info["state"] == "failed"
    ]
    holder = store.lock_holder()
    return {
        "run_dir": str(store.root),
        "working": holder,
        "experiment": cfg.name,
        "executor": executor,
        "done": counts["done"] == len(plan.cells),
        "cells": len(plan.cells),
        "counts": counts,
        "stages": stages,
        "failed": failed,
        "aggregate": agg,
        "queue": queue_info,
        "waves": _waves(launch, alive, queue_info["checked"]),
        "cell_states": {key: info["state"] for key, info in cells.items()},
    }


def _waves(launch: dict[str, Any], alive: dict[str, str], checked: bool) -> dict[str, Any] | None:
    """The wave-wise submission (site max_queued_jobs): waves so far and the feeder of the latest one."""
    waves = launch.get("waves")
    if not waves:
        return None
    last = waves[-1]
    feeder = last.get("feeder")
    waiting = last.get("deferred", 0)
    return {
        "submitted": len(waves),
        "waiting_jobs": waiting,
        "feeder": feeder,
        "feeder_state": (alive.get(feeder, "ended") if checked else "unknown") if feeder else None,
        "waves": waves,
    }
