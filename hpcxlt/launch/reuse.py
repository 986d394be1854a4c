"""`hpcxlt submit --reuse-from OTHER_RUN`: take over the done cells of another run directory whose
fingerprints equal this plan's, instead of training and evaluating them again.

A fingerprint hashes everything that determines a cell's result (model, data, hyperparameters, seed and
its upstream cells' fingerprints; `hpcxlt.grid.plan`), so equal fingerprints mean equal work: phang2020
and lowres share their `none`, `mnli` and `squad` cells, for instance. A reused training cell links the
other run's exported model (no copy of the weights); a reused evaluation cell gets the other run's
per-language records (rewritten under this run's key) and its test predictions and gold labels in the
official layout. Each reused cell's done marker names where it came from.
"""

from __future__ import annotations

import os
import shutil

from hpcxlt.evaluate import submission
from hpcxlt.evaluate.run import submission_dir
from hpcxlt.grid.plan import Cell, Plan
from hpcxlt.store import RunDirError, RunStore


def link_done_cells(store: RunStore, plan: Plan, other: RunStore) -> list[str]:
    """Mark this run's cells done from `other`'s done cells with equal fingerprints; return their keys."""
    if other.root == store.root:
        raise RunDirError(f"--reuse-from names the run directory itself ({store.root})")
    other_plan = other.load_plan()
    done = {cell.fingerprint: cell for cell in other_plan.cells if other.is_done(cell.key)}
    linked = []
    for cell in plan.cells:  # plan order: a cell's upstream is linked before it
        source = done.get(cell.fingerprint)
        if source is None or store.is_done(cell.key):
            continue
        if cell.stage == "eval":
            _copy_evaluation(store, plan, cell, other, other_plan, source)
        else:
            _link_model(store, cell, other, source)
        info = other.done_info(source.key) or {}
        store.mark_done(cell.key, {**info, "key": cell.key, "reused_from": str(other.cell_dir(source.key))})
        linked.append(cell.key)
    return linked


def _link_model(store: RunStore, cell: Cell, other: RunStore, source: Cell) -> None:
    folder = store.cell_dir(cell.key)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model", "train_log.jsonl"):
        target, link = other.cell_dir(source.key) / name, folder / name
        if not target.exists():
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)  # what an unfinished attempt here left behind
        os.symlink(target, link)


def _copy_evaluation(store: RunStore, plan: Plan, cell: Cell, other: RunStore, other_plan: Plan,
                     source: Cell) -> None:
    records = [{**record, "key": cell.key, "arm": cell.arm, "seed": cell.seed, "config_hash": cell.fingerprint,
                "reused_from": str(other.root)} for record in other.cell_records(source.key, other_plan)]
    if records:
        store.add_results(plan.job_of(cell.key).key, records, overwrite=True)
    task, lang = cell.target, cell.lang
    predictions = submission.file_path(submission_dir(other, source.arm, source.seed), task, lang)
    if predictions.is_file():
        target = submission.file_path(submission_dir(store, cell.arm, cell.seed), task, lang)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(predictions, target)
    labels = submission.file_path(other.labels_dir, task, lang)
    mine = submission.file_path(store.labels_dir, task, lang)
    if labels.is_file() and not mine.is_file():
        mine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(labels, mine)
