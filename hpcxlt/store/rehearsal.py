"""`rehearsal.json` of a rehearsal's run directory (`hpcxlt submit --rehearse`, docs/rehearsal.md).

One file, two parts: `settings`, written by `submit` before anything runs (the cuts, the jobs that preempt
themselves once, the real run's size), and `report`, written when the rehearsal is looked at after its
jobs ended (`submit --rehearse` locally or with `--wait`, the aggregation job, `hpcxlt status`): a verdict
per stage, the rates measured on the site and the real run's GPU-hours from them. This module is the one
that knows the file's name and shape; `measured_rates` is what `hpcxlt plan --calibrate` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcxlt.grid.calibrate import MeasuredRates
from hpcxlt.io import read_json, write_json_atomic
from hpcxlt.store.errors import RunDirError
from hpcxlt.store.run_dir import RunStore

FILE = "rehearsal.json"
FORMAT = 1


def rehearsal_path(store: RunStore) -> Path:
    return store.root / FILE


def read_rehearsal(store: RunStore) -> dict[str, Any] | None:
    """The rehearsal record of a run directory, or None when the run is not a rehearsal."""
    path = rehearsal_path(store)
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError as err:
        raise RunDirError(f"{path}: not valid JSON ({err}); submit the rehearsal again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "settings" not in data:
        raise RunDirError(f"{path}: not a rehearsal record of format {FORMAT}")
    return data


def write_settings(store: RunStore, settings: dict[str, Any]) -> None:
    """Record a rehearsal's settings (keeps a report already written: it is recomputed at the next look)."""
    current = read_rehearsal(store)
    write_json_atomic(
        rehearsal_path(store),
        {"format": FORMAT, "settings": settings, "report": current.get("report") if current else None},
    )


def write_report(store: RunStore, report: dict[str, Any]) -> None:
    current = read_rehearsal(store)
    if current is None:
        raise RunDirError(f"{store.root} is not a rehearsal (no {FILE})")
    write_json_atomic(rehearsal_path(store), {**current, "report": report})


def preempts(store: RunStore, job_key: str) -> bool:
    """Whether the rehearsal's settings name `job_key` among the jobs that preempt themselves once."""
    try:
        data = read_rehearsal(store)
    except RunDirError:
        return False
    return bool(data) and job_key in (data or {}).get("settings", {}).get("preempt", [])


def measured_rates(path: str | os.PathLike) -> MeasuredRates:
    """The rates a finished rehearsal measured: `path` is its run directory or its rehearsal.json."""
    path = Path(path)
    store = RunStore(path.parent if path.name == FILE else path)
    data = read_rehearsal(store)
    if data is None:
        raise RunDirError(f"{path}: no {FILE}; a rehearsal writes it (`hpcxlt submit CONFIG --rehearse ...`)")
    report = data.get("report")
    if not report or not report.get("rates"):
        raise RunDirError(
            f"{rehearsal_path(store)}: the rehearsal has measured nothing yet; when its jobs have ended, "
            f"`hpcxlt status {store.root}` writes its report"
        )
    rates = report["rates"]
    train = {
        stage: float(r["samples_per_second_per_gpu"])
        for stage, r in rates.items()
        if stage != "eval" and r.get("samples_per_second_per_gpu")
    }
    evaluation = rates.get("eval", {}).get("samples_per_second_per_gpu")
    return MeasuredRates(
        source=str(store.root),
        train_samples_per_second=train,
        eval_samples_per_second=float(evaluation) if evaluation else None,
        job_overhead_s={s: float(r["overhead_s_per_job"]) for s, r in rates.items() if r.get("overhead_s_per_job")},
        gpus_per_job={s: int(n) for s, n in data["settings"].get("gpus_per_job", {}).items()},
    )
