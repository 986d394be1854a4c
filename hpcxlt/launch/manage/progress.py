"""Where each running training cell is: step of total, latest loss and dev metric, speed and ETA.

    cell_progress(train_log_path) -> dict | None      from the tail of cells/<key>/train_log.jsonl
    progress_table(rows) -> rich Table               what `hpcxlt status RUN --watch` redraws in place

Read from the train log alone (standard library), so it works on a login node for any executor. The ETA
uses the wall-clock times of this attempt's log records (a requeue restarts the estimate), so it
reflects the node the cell runs on now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TAIL_BYTES = 256 * 1024
"""How much of a long train log is read (the latest records are at its end)."""


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line may be cut
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return out


def _total_steps(path: Path, records: list[dict[str, Any]]) -> int | None:
    for record in reversed(records):
        if record.get("event") == "start":
            return record.get("total_steps")
    # the start event is beyond the tail of a long log: it is the first line
    try:
        with open(path, encoding="utf-8") as handle:
            first = json.loads(handle.readline())
    except (OSError, json.JSONDecodeError):
        return None
    return first.get("total_steps") if first.get("event") == "start" else None


def cell_progress(train_log: str | Path) -> dict[str, Any] | None:
    """{step, total_steps, loss, dev_metric, best_dev_metric, samples_per_s, eta_s, attempt_started} or None
    when the cell has not logged yet."""
    path = Path(train_log)
    records = _records(path)
    if not records:
        return None
    steps = [r for r in records if "loss" in r and not r.get("event")]
    evals = [r for r in records if r.get("event") == "eval"]
    # this attempt: the records after the last start/resume event
    begin = max((i for i, r in enumerate(records) if r.get("event") in ("start", "resume")), default=0)
    attempt = [r for r in records[begin:] if "time" in r and "step" in r]
    total = _total_steps(path, records)
    step = max((r.get("step", 0) for r in records), default=0)
    eta = None
    if total and len(attempt) >= 2:
        (s0, t0), (s1, t1) = (attempt[0]["step"], attempt[0]["time"]), (attempt[-1]["step"], attempt[-1]["time"])
        if s1 > s0 and t1 > t0:
            eta = (total - step) * (t1 - t0) / (s1 - s0)
    stopped = any(r.get("event") == "early_stop" for r in records)
    return {
        "step": step,
        "total_steps": total,
        "loss": steps[-1]["loss"] if steps else None,
        "dev_metric": evals[-1]["metric"] if evals else None,
        "best_dev_metric": evals[-1].get("best_metric") if evals else None,
        "samples_per_s": steps[-1].get("samples_per_s") if steps else None,
        "peak_rss_gib": steps[-1].get("peak_rss_gib") if steps else None,
        "eta_s": 0.0 if stopped else eta,
        "early_stopped": stopped,
        "attempt_started": attempt[0]["time"] if attempt else None,
    }


def running_progress(store, status: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Progress of every running intermediate/target cell of a `run_status` result, by cell key."""
    states = status.get("cell_states", {})
    plan = store.load_plan()
    out = {}
    for cell in plan.cells:
        if cell.stage in ("intermediate", "target") and states.get(cell.key) == "running":
            out[cell.key] = cell_progress(store.train_log_path(cell.key))
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_rows(progress: dict[str, dict[str, Any] | None]) -> list[tuple[str, ...]]:
    """Display rows: cell, step/total (percent), loss, dev metric (best), samples/s, peak resident GiB, ETA."""
    rows: list[tuple[str, ...]] = []
    for key, p in progress.items():
        if p is None:
            rows.append((key, "starting", "", "", "", "", ""))
            continue
        total = p["total_steps"]
        where = f"{p['step']}/{total} ({100 * p['step'] / total:.0f}%)" if total else str(p["step"])
        dev = (
            ""
            if p["dev_metric"] is None
            else f"{p['dev_metric']:.2f}"
            + (f" (best {p['best_dev_metric']:.2f})" if p["best_dev_metric"] is not None else "")
        )
        rows.append(
            (
                key,
                where,
                "" if p["loss"] is None else f"{p['loss']:.4f}",
                dev,
                "" if p["samples_per_s"] is None else f"{p['samples_per_s']:.1f}",
                "" if p.get("peak_rss_gib") is None else f"{p['peak_rss_gib']:.2f}",
                "early stop" if p["early_stopped"] else _duration(p["eta_s"]),
            )
        )
    return rows


PROGRESS_HEADER = ("running cell", "step", "loss", "dev metric", "samples/s", "peak GiB", "ETA")
