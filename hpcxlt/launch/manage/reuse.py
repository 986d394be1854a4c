"""`hpcxlt submit --reuse-from OTHER_RUN`: take over the done cells of another run directory whose
fingerprints equal this plan's, instead of training and evaluating them again.

A fingerprint hashes everything that determines a cell's result (model, data, hyperparameters, seed and
its upstream cells' fingerprints; `hpcxlt.grid.plan`), so equal fingerprints mean equal work: phang2020
and lowres share their `none`, `mnli` and `squad` cells, for instance. A reused training cell gets the
other run's exported model as hard links (no copy of the weights on the same file system, a copy across
file systems; never a symbolic link: deleting the other run must not empty this one); a reused
evaluation cell gets the other run's per-language records (rewritten under this run's key) and its test
predictions, gold labels and example clusters. Each reused cell's done marker names where it came from.
"""

from __future__ import annotations

import os
import shutil

from hpcxlt.evaluate import submission
from hpcxlt.grid.plan import Cell, Plan
from hpcxlt.store import RunDirError, RunStore


def reusable(store: RunStore, plan: Plan, other: RunStore) -> list[tuple[Cell, Cell]]:
    """(this run's cell, the other run's done cell with its fingerprint) for every cell not done here."""
    if other.root == store.root:
        raise RunDirError(f"--reuse-from names the run directory itself ({store.root})")
    done = {cell.fingerprint: cell for cell in other.load_plan().cells if other.is_done(cell.key)}
    return [
        (cell, done[cell.fingerprint])
        for cell in plan.cells
        if cell.fingerprint in done and not store.is_done(cell.key)
    ]


def link_done_cells(store: RunStore, plan: Plan, other: RunStore) -> list[str]:
    """Mark this run's cells done from `other`'s done cells with equal fingerprints; return their keys."""
    pairs = reusable(store, plan, other)
    other_plan = other.load_plan()
    # Training cells first (plan order: a cell's upstream is linked before it), then evaluation cells a
    # job at a time: each of the other run's job files is read once and each of ours written once, not
    # once per cell (a job evaluates every language of its target).
    for cell, source in pairs:
        if cell.stage != "eval":
            _link_model(store, cell, other, source)
            _mark_reused(store, cell, other, source)
    by_job: dict[str, list[tuple[Cell, Cell]]] = {}
    for cell, source in pairs:
        if cell.stage == "eval":
            by_job.setdefault(plan.job_of(cell.key).key, []).append((cell, source))
    for job_key, job_pairs in by_job.items():
        _copy_evaluations(store, job_key, job_pairs, other, other_plan)
        for cell, source in job_pairs:  # done only once its records are written
            _mark_reused(store, cell, other, source)
    return [cell.key for cell, _ in pairs]


def _mark_reused(store: RunStore, cell: Cell, other: RunStore, source: Cell) -> None:
    info = other.done_info(source.key) or {}
    store.mark_done(cell.key, {**info, "key": cell.key, "reused_from": str(other.cell_dir(source.key))})


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (the same bytes, no space), or a copy where the two runs are on different file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _link_model(store: RunStore, cell: Cell, other: RunStore, source: Cell) -> None:
    folder = store.cell_dir(cell.key)
    folder.mkdir(parents=True, exist_ok=True)
    for target, mine in (
        (other.model_dir(source.key), store.model_dir(cell.key)),
        (other.train_log_path(source.key), store.train_log_path(cell.key)),
    ):
        name = mine.name
        if not target.exists():
            continue
        # built beside, then moved into place: an interrupted reuse leaves no half model
        staging = mine.with_name(f".{name}.reuse-{os.getpid()}")
        if target.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(target, staging, copy_function=_link_or_copy, symlinks=False)
        else:
            staging.unlink(missing_ok=True)
            _link_or_copy(str(target), str(staging))
        if mine.is_symlink() or mine.is_file():
            mine.unlink()
        elif mine.exists():
            shutil.rmtree(mine)  # what an unfinished attempt here left behind
        os.replace(staging, mine)


def _copy_evaluations(
    store: RunStore, job_key: str, pairs: list[tuple[Cell, Cell]], other: RunStore, other_plan: Plan
) -> None:
    """Write one job's reused records in one rewrite of its file, then copy each cell's official files."""
    sources: dict[str, list[str]] = {}  # the other run's jobs these cells come from -> their cells
    for _, source in pairs:
        sources.setdefault(other_plan.job_of(source.key).key, []).append(source.key)
    theirs: dict[str, list[dict]] = {}
    for other_job, keys in sources.items():  # each of its files read once
        theirs.update(other.job_records(other_job, keys))
    records = [
        {
            **record,
            "key": cell.key,
            "arm": cell.arm,
            "seed": cell.seed,
            "config_hash": cell.fingerprint,
            "reused_from": str(other.root),
        }
        for cell, source in pairs
        for record in theirs[source.key]
    ]
    if records:
        store.add_results(job_key, records, overwrite=True)
    for cell, source in pairs:
        _copy_official_files(store, cell, other, source)


def _copy_official_files(store: RunStore, cell: Cell, other: RunStore, source: Cell) -> None:
    task, lang = cell.target, cell.lang
    if task is None or lang is None:
        raise ValueError(f"{cell.key}: an evaluation cell without a target and language")
    predictions = submission.file_path(other.submission_dir(source.arm, source.seed), task, lang)
    if predictions.is_file():
        target = submission.file_path(store.submission_dir(cell.arm, cell.seed), task, lang)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(predictions, target)
    for theirs, mine in (
        (submission.file_path(other.labels_dir, task, lang), submission.file_path(store.labels_dir, task, lang)),
        (other.example_groups_path(task, lang), store.example_groups_path(task, lang)),
    ):
        if theirs.is_file() and not mine.is_file():
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(theirs, mine)
