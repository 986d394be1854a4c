"""Runs side by side: `hpcxlt runs DIR...` lists run directories, `hpcxlt compare A B` shows what differs.

find_runs(paths) -> run directories: each path that is one, or the run directories right below it
summary(store)   -> {run_dir, experiment, cells, done, last_activity}
config_diff(a, b) -> [(dotted key, value in a, value in b)]
score_diff(a, b)  -> [(arm, target, score in a, score in b)] from the two runs' tables.json
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcxlt.config import config_to_dict
from hpcxlt.io import read_json
from hpcxlt.store import RunStore


def find_runs(paths: list[str]) -> list[RunStore]:
    found = []
    for path in map(Path, paths):
        candidates = (
            [path]
            if RunStore(path).config_path.is_file()
            else sorted(p for p in path.iterdir() if p.is_dir())
            if path.is_dir()
            else []
        )
        stores = (RunStore(p) for p in candidates)
        found += [store for store in stores if store.config_path.is_file() and store.plan_path.is_file()]
    return found


def _last_activity(store: RunStore) -> float:
    """The newest change the run directory shows at a glance (folders' times: no walk over every cell)."""
    places = store.activity_paths()
    return max((os.stat(p).st_mtime for p in places if p.exists()), default=0.0)


def summary(store: RunStore) -> dict[str, Any]:
    plan = store.load_plan()
    done = sum(store.is_done(cell.key) for cell in plan.cells)
    return {
        "run_dir": str(store.root),
        "experiment": store.load_config().name,
        "cells": len(plan.cells),
        "done": done,
        "last_activity": _last_activity(store),
        "tables": store.tables_json.is_file(),
    }


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def config_diff(a: RunStore, b: RunStore) -> list[tuple[str, Any, Any]]:
    flat_a, flat_b = _flat(config_to_dict(a.load_config())), _flat(config_to_dict(b.load_config()))
    return [
        (key, flat_a.get(key), flat_b.get(key))
        for key in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(key) != flat_b.get(key)
    ]


def _scores(store: RunStore) -> dict[tuple[str, str], float | None]:

    if not store.tables_json.is_file():
        return {}
    rows = read_json(store.tables_json).get("tables", {}).get("task_scores", {}).get("rows", [])
    return {(r["arm"], r["target"]): (r.get("score") or {}).get("mean") for r in rows}


def score_diff(a: RunStore, b: RunStore) -> list[tuple[str, str, float | None, float | None]]:
    mine, theirs = _scores(a), _scores(b)
    return [
        (arm, target, mine.get((arm, target)), theirs.get((arm, target)))
        for arm, target in sorted(set(mine) | set(theirs))
    ]


__all__ = ["config_diff", "find_runs", "score_diff", "summary"]
