"""Read every result record of a run, in parallel under MPI, into one table of scores on rank 0.

Rank 0 lists `results/` once (a million-entry directory listed by every rank is the classic way
to hurt a parallel file system), cuts the sorted list into contiguous blocks and scatters them
to the reading ranks (1..N-1; rank 0 meanwhile loads the plan); each reader reads, validates and
groups its block; rank 0 gathers the groups and merges them in rank order, which is file order,
so the result is identical for any number of ranks.

Who takes part: `hpcxlt.aggregate.mpi_world` (the one mpi4py module); what a rank makes of its files:
`hpcxlt.aggregate.columns.read_block`; one record per cell: `hpcxlt.aggregate.duplicates`.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from hpcxlt.aggregate.columns import Columns, GroupKey, read_block
from hpcxlt.aggregate.duplicates import resolve_duplicates
from hpcxlt.aggregate.mpi_world import World
from hpcxlt.aggregate.records import Problem
from hpcxlt.store.run_dir import list_result_names

CellKey = tuple[int, str]
"""(seed, lang)."""


class GatherError(RuntimeError):
    """A rank failed while reading its share of the records."""


class Entry(NamedTuple):
    """One language's score on rank 0 and where its record is."""

    score: float
    file: int
    """Index into Gathered.files."""
    line: int | None
    """Line in a .jsonl file, None for a one-record file."""


@dataclass(frozen=True, kw_only=True)
class Gathered:
    """Every valid record of a run, grouped, plus what was wrong with the rest."""

    columns: Mapping[GroupKey, Columns]
    """(split, arm, target) -> its records as arrays."""
    langs: tuple[str, ...]
    """The languages that Columns.lang codes stand for."""
    files: tuple[str, ...]
    """Every record file read, sorted (paths)."""
    problems: tuple[Problem, ...]
    """Unreadable or invalid records, and conflicting duplicates, in file order."""
    duplicates: tuple[str, ...] = ()
    """Records that repeat another with the same score (harmless; the first one is used)."""
    n_records: int = 0
    """Valid records read (before duplicates were dropped)."""
    ranks: int = 1
    """Ranks taking part (with several, rank 0 coordinates and ranks 1..N-1 read the records)."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds per phase on rank 0: list, read (own block), root_task, gather (incl. waiting for readers), merge."""

    @property
    def values(self) -> dict[GroupKey, dict[CellKey, Entry]]:
        """(split, arm, target) -> (seed, lang) -> Entry: the columns one cell at a time (for small uses)."""
        out: dict[GroupKey, dict[CellKey, Entry]] = {}
        for group, cols in self.columns.items():
            out[group] = {
                (seed, self.langs[lang]): Entry(score, file, line or None)
                for seed, lang, score, file, line in zip(
                    cols.seed.tolist(), cols.lang.tolist(), cols.score.tolist(), cols.file.tolist(), cols.line.tolist()
                )
            }
        return out

    def where(self, entry: Entry) -> str:
        path = self.files[entry.file]
        return path if entry.line is None else f"{path}:{entry.line}"


def partition(n_items: int, size: int, rank: int) -> slice:
    """Rank `rank`'s contiguous block of `n_items` sorted items; blocks differ in length by at most one."""
    return slice(n_items * rank // size, n_items * (rank + 1) // size)


def readers(size: int) -> list[int]:
    """Ranks that read records: all but rank 0 when there are several (rank 0 runs the root task meanwhile)."""
    return list(range(1, size)) if size > 1 else [0]


def gather_records(
    results_dir: str | os.PathLike | None,
    *,
    qa_convention: str | None,
    world: World,
    root_task: Callable[[], Any] | None = None,
) -> tuple[Gathered | None, Any]:
    """Collective: every rank calls it; rank 0 gets (Gathered, root_task's result), the others (None, None).

    Rank 0 passes the results folder and the run's QA convention; other ranks pass None for both
    and receive their block from rank 0. With several ranks, rank 0 reads no records itself: it
    runs `root_task` (e.g. loading a large plan.json) while ranks 1..N-1 read, so the serial part
    overlaps the parallel one. With one rank it reads everything, then runs `root_task`.
    """
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    blocks: list[tuple[str, list[str], int, str | None]] | None = None
    names: list[str] = []
    if world.rank == 0:
        if results_dir is None:
            raise ValueError("gather_records: rank 0 must pass the results folder")
        folder = os.fspath(results_dir)
        names = list_result_names(folder)
        workers = readers(world.size)
        blocks = [(folder, [], 0, qa_convention) for _ in range(world.size)]
        for index, rank in enumerate(workers):
            part = partition(len(names), len(workers), index)
            blocks[rank] = (folder, names[part], part.start, qa_convention)
        timings["list"] = time.perf_counter() - clock
    world.quiet_wait()
    folder, mine, offset, convention = world.scatter(blocks)
    clock = time.perf_counter()
    try:
        payload = read_block(folder, mine, offset, convention)
    except Exception:  # a bug or MemoryError on one rank must reach rank 0, not hang it in gather
        payload = {"error": f"rank {world.rank}: {traceback.format_exc()}"}
    timings["read"] = time.perf_counter() - clock
    task_result, task_error = None, None
    if world.rank == 0 and root_task is not None:
        clock = time.perf_counter()
        try:
            task_result = root_task()
        except Exception as err:  # raised below, after the collective, so no rank is left waiting
            task_error = err
        timings["root_task"] = time.perf_counter() - clock
    clock = time.perf_counter()
    world.quiet_wait()
    payloads = world.gather(payload)
    timings["gather"] = time.perf_counter() - clock
    if world.rank != 0:
        return None, None
    if payloads is None:
        raise GatherError("the gather returned no payloads on rank 0")
    if task_error is not None:
        raise task_error
    failed = [p["error"] for p in payloads if "error" in p]
    if failed:
        raise GatherError("reading records failed:\n" + "\n".join(failed))
    clock = time.perf_counter()
    gathered = _merge(folder, names, payloads, world.size)
    timings["merge"] = time.perf_counter() - clock
    return Gathered(**{**gathered, "timings": timings}), task_result


def _merge(folder: str, names: list[str], payloads: list[dict[str, Any]], ranks: int) -> dict[str, Any]:
    files = tuple(os.path.join(folder, name) for name in names)
    langs: dict[str, int] = {}
    parts: dict[GroupKey, list[tuple]] = {}
    problems: list[Problem] = []
    for payload in payloads:  # rank order == file order
        problems.extend(payload["problems"])
        remap = np.array([langs.setdefault(lang, len(langs)) for lang in payload["langs"]], dtype=np.int32)
        for group, (seed, lang, score, file, line) in payload["groups"].items():
            parts.setdefault(group, []).append(
                (seed, remap[lang] if len(lang) else lang.astype(np.int32), score, file, line)
            )
    vocab = tuple(langs)
    merged: dict[GroupKey, Columns] = {}
    duplicates: list[str] = []
    for group, chunks in parts.items():
        cols = Columns(*(np.concatenate(arrays) for arrays in zip(*chunks)))
        cell = cols.seed * max(len(vocab), 1) + cols.lang
        if len(np.unique(cell)) < len(cell):
            cols = resolve_duplicates(group, cols, vocab, files, problems, duplicates)
        merged[group] = cols
    problems.sort(key=lambda p: (p.path, p.line or 0))
    n_records = sum(p["n_records"] for p in payloads)
    return {
        "columns": merged,
        "langs": vocab,
        "files": files,
        "problems": tuple(problems),
        "duplicates": tuple(duplicates),
        "n_records": n_records,
        "ranks": ranks,
    }
