"""Read every result record of a run, in parallel under MPI, into one table of scores on rank 0.

Rank 0 lists `results/` once (a million-entry directory listed by every rank is the classic way
to hurt a parallel file system), cuts the sorted list into contiguous blocks and scatters them
to the reading ranks (1..N-1; rank 0 meanwhile loads the plan); each reader reads, validates and
groups its block; rank 0 gathers the groups and merges them in rank order, which is file order,
so the result is identical for any number of ranks.

This is the only module that imports mpi4py, and only when a launcher (mpiexec, mpirun, srun)
started more than one process. Without one, or without mpi4py, it runs as a single rank.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from hpcxlt.aggregate.records import RECORD_SUFFIXES, Problem, Record, parse_line, read_records
from hpcxlt.grid.plan import eval_key
from hpcxlt.launcher_env import launched_world

GroupKey = tuple[str, str, str]
"""(split, arm, target)."""
CellKey = tuple[int, str]
"""(seed, lang)."""


class GatherError(RuntimeError):
    """A rank failed while reading its share of the records."""


# --- who am I ---------------------------------------------------------------------------------


def launcher_world(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, size) as the process launcher announced it, or None when no launcher started us.

    Read by `hpcxlt.launcher_env`, the same reader training uses (MPI variables win over Slurm's, the
    Slurm batch step without srun is one process).
    """
    return launched_world(env)


@dataclass(frozen=True, kw_only=True)
class World:
    """This process's place among the aggregation ranks, with single-rank fallbacks for each collective."""

    rank: int
    """Rank in the gather (0 is the one that builds the tables)."""
    size: int
    """Number of ranks taking part."""
    comm: Any = None
    """mpi4py communicator; None when running as one rank."""
    idle: bool = False
    """True for launcher ranks > 0 that cannot take part (no working MPI): they do nothing."""
    note: str | None = None
    """Why MPI is not used although a launcher started several processes."""

    def quiet_wait(self, poll_s: float = 0.005) -> None:
        """Barrier that sleeps while it waits.

        MPICH's blocking collectives busy-poll: ranks that wait in one burn a core each, which on an
        oversubscribed node starves the ranks still working (rank 0 loading the plan, slow readers).
        """
        if self.comm is None:
            return
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(poll_s)

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0) if self.comm is not None else obj

    def scatter(self, items: list[Any] | None) -> Any:
        if self.comm is not None:
            return self.comm.scatter(items, root=0)
        if items is None:
            raise ValueError("scatter without MPI: this process is rank 0 and must pass the items")
        return items[0]

    def gather(self, obj: Any) -> list[Any] | None:
        return self.comm.gather(obj, root=0) if self.comm is not None else [obj]


def world(env: Mapping[str, str] | None = None) -> World:
    """The World for this process: MPI when a launcher started several ranks and mpi4py talks to it."""
    launched = launcher_world(env)
    if launched is None or launched[1] <= 1:
        return World(rank=0, size=1)
    env_rank, env_size = launched
    try:
        from mpi4py import MPI
    except ImportError as err:
        return World(
            rank=0,
            size=1,
            idle=env_rank != 0,
            note=f"{env_size} processes were launched but mpi4py cannot be imported ({err}); rank 0 reads every record",
        )
    comm = MPI.COMM_WORLD
    if comm.Get_size() != env_size:
        # e.g. `srun` without an MPI plugin this mpi4py's MPI understands: every process is a singleton
        return World(
            rank=0,
            size=1,
            idle=env_rank != 0,
            note=f"the launcher started {env_size} processes but MPI sees a world of {comm.Get_size()} "
            "(try `srun --mpi=pmi2` or mpiexec); launcher rank 0 reads every record",
        )
    return World(rank=comm.Get_rank(), size=comm.Get_size(), comm=comm)


# --- the work ---------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One language's score on rank 0 and where its record is."""

    score: float
    file: int
    """Index into Gathered.files."""
    line: int | None
    """Line in a .jsonl file, None for a one-record file."""


class Columns(NamedTuple):
    """The records of one (split, arm, target), one cell each, as arrays (duplicates already resolved)."""

    seed: Any
    """int64 seeds."""
    lang: Any
    """int32 codes into Gathered.langs."""
    score: Any
    """float64 scores (points, recomputed under the run's QA convention)."""
    file: Any
    """int32 indexes into Gathered.files."""
    line: Any
    """int32 lines in a .jsonl file; 0 for a one-record file."""


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


def list_record_files(results_dir: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the record files (*.json, *.jsonl) in `results_dir`; hidden temporaries are skipped."""
    try:
        with os.scandir(results_dir) as entries:
            names = [e.name for e in entries if e.name.endswith(RECORD_SUFFIXES) and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    names.sort()
    return names


def partition(n_items: int, size: int, rank: int) -> slice:
    """Rank `rank`'s contiguous block of `n_items` sorted items; blocks differ in length by at most one."""
    return slice(n_items * rank // size, n_items * (rank + 1) // size)


def read_block(results_dir: str, names: list[str], offset: int, qa_convention: str) -> dict[str, Any]:
    """Read, validate and group one rank's files: {'groups', 'langs', 'problems', 'n_records'}.

    JSON-lines files go through the column-wise reader (`hpcxlt.aggregate.columns`) together; what it
    cannot judge, and one-record .json files, record by record (`records.read_records`). Groups map
    (split, arm, target) to column arrays (`Columns` fields; lang as codes into 'langs'): numpy arrays
    pickle small and fast for the gather.
    """
    from hpcxlt.aggregate import columns

    datas: list[bytes] = []
    for name in names:
        data = b""
        if name.endswith(".jsonl"):
            try:
                with open(os.path.join(results_dir, name), "rb") as handle:
                    data = handle.read()
            except OSError:
                pass  # the record-by-record path reports it
        datas.append(data)
    block = (
        columns.read_block(datas, qa_convention) if any(datas) else columns.Block({}, [], list(range(len(names))), [])
    )
    slow: dict[GroupKey, list[tuple]] = {}
    problems: list[Problem] = []

    def keep(item: Record | Problem, position: int, line: int | None) -> None:
        if isinstance(item, Problem):
            problems.append(item)
        else:
            slow.setdefault((item.split, item.arm, item.target), []).append(
                (item.seed, item.lang, item.score, position + offset, line or 0)
            )

    for position in block.slow_files:
        for line, item in read_records(os.path.join(results_dir, names[position]), qa_convention=qa_convention):
            keep(item, position, line)
    for position, line, text in block.slow_lines:
        keep(parse_line(os.path.join(results_dir, names[position]), line, text, qa_convention), position, line)
    langs = list(block.langs)
    code = {lang: i for i, lang in enumerate(langs)}
    groups: dict[GroupKey, tuple] = {}
    for group, (seed, lang, score, file, line) in block.groups.items():
        groups[group] = (seed, lang, score, file + offset, line)
    for group, rows in slow.items():
        seeds, row_langs, scores, files, lines = zip(*rows)
        arrays: tuple[np.ndarray, ...] = (
            np.array(seeds, dtype=np.int64),
            np.array([code.setdefault(l, len(code)) for l in row_langs], dtype=np.int32),
            np.array(scores, dtype=np.float64),
            np.array(files, dtype=np.int32),
            np.array(lines, dtype=np.int32),
        )
        if group in groups:
            arrays = tuple(np.concatenate([a, b]) for a, b in zip(groups[group], arrays))
        groups[group] = arrays
    langs = list(code) if len(code) > len(langs) else langs
    n_records = sum(len(cols[0]) for cols in groups.values())
    return {"groups": groups, "langs": langs, "problems": problems, "n_records": n_records}


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
        names = list_record_files(folder)
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
            cols = _resolve_duplicates(group, cols, vocab, files, problems, duplicates)
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


def _resolve_duplicates(
    group: GroupKey,
    cols: Columns,
    vocab: tuple[str, ...],
    files: tuple[str, ...],
    problems: list[Problem],
    duplicates: list[str],
) -> Columns:
    """One record per cell: the first in file order; a repeat with the same score is noted, a different
    score drops the cell (neither is used) and is a problem. Rare, so plain Python."""

    def where(file: int, line: int) -> str:
        return files[file] if not line else f"{files[file]}:{line}"

    order = np.lexsort((cols.line, cols.file)).tolist()
    first: dict[tuple[int, int], int] = {}
    conflicted: set[tuple[int, int]] = set()
    for row in order:
        cell = (int(cols.seed[row]), int(cols.lang[row]))
        if cell in conflicted:
            continue
        if cell not in first:
            first[cell] = row
            continue
        kept = first[cell]
        here, there = where(int(cols.file[row]), int(cols.line[row])), where(int(cols.file[kept]), int(cols.line[kept]))
        if cols.score[row] == cols.score[kept]:
            duplicates.append(f"{here} repeats {there} (same score; ignored)")
            continue
        split, arm, target = group
        key = eval_key(arm, target, int(cell[0]), vocab[cell[1]])
        problems.append(
            Problem(
                path=files[int(cols.file[row])],
                line=int(cols.line[row]) or None,
                message=f"conflicting records for {key} ({split}): {float(cols.score[row])} here, "
                f"{float(cols.score[kept])} in {there}; neither is used",
                key=key,
                split=split,
            )
        )
        conflicted.add(cell)
        del first[cell]
    rows = sorted(first.values())
    return Columns(*(array[rows] for array in cols))
