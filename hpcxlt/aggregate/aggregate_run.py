"""`aggregate(run_dir)`: gather every record (MPI-parallel when launched so), build, write and return the tables.

Every rank calls it; rank 0 does the set-up, the tables and the writing, the others only read
their share of the records and return None. A set-up error on rank 0 is broadcast first, so no
rank waits forever in a collective that rank 0 will never reach.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcxlt.aggregate import mpi_world, plots, render
from hpcxlt.aggregate.gather import Gathered, gather_records
from hpcxlt.aggregate.mpi_world import World
from hpcxlt.aggregate.score_book import ScoreBook, planned_eval_blocks
from hpcxlt.aggregate.tables import Table, build_tables
from hpcxlt.aggregate.tested_tables import tested_tables
from hpcxlt.config.schema import BASELINE_ARM, EVAL_SPLITS
from hpcxlt.io import write_json_atomic, write_text_atomic
from hpcxlt.store import RunDirError, RunStore


class AggregateError(Exception):
    """The aggregation cannot be done as asked (bad split, unknown arm to plot, not a run directory)."""


@dataclass(frozen=True, kw_only=True)
class Options:
    """What to aggregate and where to write it."""

    split: str = "test"
    """Split whose records the tables show ('dev' or 'test'); it must be one of the run's eval.splits."""
    partial: bool = False
    """Compute figures from the cells present (marked partial) instead of leaving incomplete ones empty."""
    out: str | os.PathLike | None = None
    """Folder for the files; default RUN_DIR/tables."""
    plot_arms: tuple[str, ...] | None = None
    """Arms to draw per-language delta plots for; None: every arm except the baseline."""
    plots: bool = True
    """Draw the PNG figures."""


@dataclass(frozen=True, kw_only=True)
class Report:
    """What an aggregation produced (rank 0 only)."""

    tables: tuple[Table, ...]
    """The tables in reading order."""
    data: dict[str, Any]
    """The JSON object written to tables.json and printed by --json."""
    files: tuple[Path, ...]
    """Every file written (tables, plots, tables.json)."""
    gathered: Gathered
    """The raw gather result (timings, number of ranks)."""
    notes: tuple[str, ...] = field(default=())
    """Run-time remarks not part of the data (e.g. why MPI was not used)."""


@dataclass(frozen=True, kw_only=True)
class _Setup:
    store: Any
    cfg: Any
    out: Path
    plot_arms: tuple[str, ...]


def _setup(run_dir: str | os.PathLike, options: Options) -> _Setup:

    store = RunStore(run_dir)
    if not store.root.is_dir():
        raise AggregateError(f"{store.root}: no such run directory")
    try:
        cfg = store.load_config()
    except RunDirError as err:
        raise AggregateError(str(err)) from None
    if not store.plan_path.exists():  # loaded later, while the other ranks read records
        raise AggregateError(f"{store.root} is not a run directory (no plan.json); create one with `hpcxlt submit`")
    if options.split not in EVAL_SPLITS:
        raise AggregateError(f"--split: {options.split!r} is not one of {', '.join(EVAL_SPLITS)}")
    if options.split not in cfg.eval.splits:
        raise AggregateError(
            f"--split {options.split}: this run evaluates only {', '.join(cfg.eval.splits)} (config eval.splits)"
        )
    arms = [arm.name for arm in cfg.arms]
    if options.plot_arms is None:
        plot_arms = tuple(a for a in arms if a != BASELINE_ARM) if BASELINE_ARM in arms else ()
    else:
        plot_arms = tuple(options.plot_arms)
        for arm in plot_arms:
            if arm not in arms:
                raise AggregateError(f"--plot-arm: {arm!r} is not an arm of this run; arms are {', '.join(arms)}")
            if arm == BASELINE_ARM:
                raise AggregateError(f"--plot-arm: {arm!r} is the baseline; its deltas against itself are zero")
        if plot_arms and BASELINE_ARM not in arms:
            raise AggregateError("--plot-arm: this run has no 'none' arm to compute deltas against")
    out = Path(options.out).resolve() if options.out is not None else store.tables_dir
    return _Setup(store=store, cfg=cfg, out=out, plot_arms=plot_arms)


def aggregate(run_dir: str | os.PathLike, options: Options = Options(), *, world: World | None = None) -> Report | None:
    """Collective over the MPI ranks (or one process): rank 0 returns the Report, other ranks None."""
    world = world or mpi_world.world()
    if world.idle:
        return None
    setup, error = None, None
    clock = time.perf_counter()
    if world.rank == 0:
        try:
            setup = _setup(run_dir, options)
        except Exception as err:  # any set-up failure must reach the other ranks before they block
            error = err
    setup_s = time.perf_counter() - clock
    if world.bcast(error is not None):
        if error is not None:
            raise error
        return None

    gathered, eval_blocks = gather_records(
        setup.store.results_dir if setup else None,
        qa_convention=setup.cfg.eval.qa_convention if setup else None,
        world=world,
        root_task=(lambda: planned_eval_blocks(setup.store.plan_path)) if setup else None,
    )
    if world.rank != 0:
        return None
    if setup is None or gathered is None:  # rank 0 has both (a set-up failure was raised above)
        raise ValueError("aggregate: rank 0 is missing its set-up or the gathered records")
    clock = time.perf_counter()
    report = _build(setup, options, gathered, eval_blocks, world)
    timings = {"setup": setup_s, **gathered.timings, "tables": time.perf_counter() - clock}
    return Report(
        tables=report.tables,
        data=report.data,
        files=report.files,
        gathered=replace(gathered, timings=timings),
        notes=report.notes,
    )


def _build(setup: _Setup, options: Options, gathered: Gathered, eval_blocks: list, world: World) -> Report:

    book = ScoreBook(gathered, eval_blocks, setup.cfg, allow_partial=options.partial)
    split = options.split
    tables = build_tables(book, split)
    # the tested comparisons go right after the descriptive tables they test
    by_kind = tested_tables(book, setup.store, split)
    tested = {"deltas": by_kind["significance"], "resource": by_kind["significance_resource"]}
    tables = [t for table in tables for t in ((table, tested[table.name]) if table.name in tested else (table,))]
    tables.append(by_kind["significance_languages"])  # the appendix goes last: every comparison per language
    missing = book.missing(split, setup.store)
    unplanned = book.unplanned()
    problems = [p.to_json() for p in gathered.problems]
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} planned {split} cells have no usable record; figures over them are "
            + (
                "computed from the cells present and marked partial"
                if options.partial
                else "left empty (—); pass --partial to compute them from the cells present"
            )
        )
    if problems:
        notes.append(
            f"{len(problems)} record(s) could not be used (listed under bad records); the tables they "
            "belong to are marked partial"
        )
    if unplanned:
        notes.append(f"{len(unplanned)} record(s) belong to no planned eval cell of this config and are not used")
    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for table in tables:
        files += render.write_table_files(table, out)
    if options.plots:
        by_name = {t.name: t for t in tables}
        heatmap = plots.delta_heatmap(by_name["deltas"], out / "deltas_heatmap.png", by_name["significance"])
        files += [heatmap] if heatmap else []
        for arm in setup.plot_arms:
            path = plots.language_deltas(book, split, arm, out / f"language_deltas_{arm}.png")
            files += [path] if path else []
    # plots of an earlier aggregation that this one did not draw (--no-plots, an arm no longer plotted)
    # would show old figures beside new tables
    for old in [out / "deltas_heatmap.png", *out.glob("language_deltas_*.png")]:
        if old not in files:
            old.unlink(missing_ok=True)
    files.append(out / "missing.csv")
    files.append(out / "tables.md")
    files.append(out / "tables.json")
    data = {
        "run_dir": str(setup.store.root),
        "experiment": setup.cfg.name,
        "split": split,
        "partial_mode": options.partial,
        "qa_convention": setup.cfg.eval.qa_convention,
        "complete": not missing and not problems,
        "records": {
            "files": len(gathered.files),
            "valid": gathered.n_records,
            "bad": len(problems),
            "duplicates": len(gathered.duplicates),
            "unplanned": len(unplanned),
            "missing_cells": len(missing),
        },
        "notes": notes,
        "tables": {t.name: t.to_json() for t in tables},
        "missing": missing,
        "problems": problems,
        "unplanned": unplanned,
        "duplicates": list(gathered.duplicates),
        "files": [str(p) for p in files],
    }
    write_text_atomic(out / "missing.csv", _missing_csv(missing))
    write_text_atomic(out / "tables.md", render.report_markdown(tables, data))
    write_json_atomic(out / "tables.json", data)
    run_notes = (world.note,) if world.note else ()
    return Report(tables=tuple(tables), data=data, files=tuple(files), gathered=gathered, notes=run_notes)


def _missing_csv(missing: list[dict[str, Any]]) -> str:

    buffer = io.StringIO()
    fields = ["key", "split", "arm", "target", "seed", "lang", "state", "reason"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(missing)
    return buffer.getvalue()
