"""`hpcxlt redo RUN CELL_OR_PATTERN...`: run done cells again, and everything downstream of them.

    selected(plan, patterns)       -> the cells the patterns name (keys or shell-style patterns)
    with_downstream(plan, keys)    -> those and every cell that depends on them, in plan order
    set_aside(store, plan, keys)   -> the folder holding what they had; the cells are no longer done

Nothing is deleted: each cell's folder (done marker, checkpoints, model, train log) moves to
`cells/.redo-<time>/<key>`, and an evaluation cell's records move from its job's results file to
`results/.redo-<time>/<job>.jsonl`. Then the next `resume` (which `redo` runs unless --dry-run) trains and
evaluates them again; their predictions are rewritten when they are evaluated again.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from pathlib import Path

from hpcxlt.grid.plan import Plan
from hpcxlt.io import write_text_atomic
from hpcxlt.store import RunStore


class RedoError(ValueError):
    """A pattern that names no cell, or no cell to redo."""


def selected(plan: Plan, patterns: list[str]) -> list[str]:
    """Cell keys named by `patterns` (exact keys or fnmatch patterns such as 'target.en.*.s2'), plan order."""
    keys = [cell.key for cell in plan.cells]
    chosen: set[str] = set()
    for pattern in patterns:
        found = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
        if not found:
            raise RedoError(
                f"{pattern!r} names no cell of this run (cell keys look like 'inter.en.s1', "
                "'target.en.xnli.s1', 'eval.en.xnli.s1.de'; `hpcxlt plan CONFIG --cells` lists them)"
            )
        chosen.update(found)
    return [k for k in keys if k in chosen]


def with_downstream(plan: Plan, keys: list[str]) -> list[str]:
    """`keys` and every cell downstream of them (a target trained from a redone intermediate model, its
    evaluations), in plan order: plan order is topological, so one pass finds them all."""
    out = set(keys)
    for cell in plan.cells:
        if any(dep in out for dep in cell.deps):
            out.add(cell.key)
    return [cell.key for cell in plan.cells if cell.key in out]


def set_aside(store: RunStore, plan: Plan, keys: list[str]) -> Path:
    """Move what the cells had out of the way (module docstring); return the folder that keeps it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept, kept_records = store.redo_dirs(stamp)
    kept.mkdir(parents=True, exist_ok=True)
    for key in keys:
        folder = store.cell_dir(key)
        if folder.exists():
            os.replace(folder, kept / key)
        store.set_state(key, "pending", reason=f"redo: the cell's earlier work is kept in {kept / key}")
    by_job: dict[str, set[str]] = {}
    for key in keys:
        if plan.cell(key).stage == "eval":
            by_job.setdefault(plan.job_of(key).key, set()).add(key)
    for job_key, cells in by_job.items():
        path = store.job_results_path(job_key)
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        mine = [line for line in lines if line.strip() and json.loads(line).get("key") in cells]
        if mine:
            write_text_atomic(kept_records / path.name, "\n".join(mine) + "\n")
            write_text_atomic(path, "".join(line + "\n" for line in lines if line.strip() and line not in mine))
    return kept


__all__ = ["RedoError", "selected", "set_aside", "with_downstream"]
