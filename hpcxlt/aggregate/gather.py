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
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from hpcxlt.aggregate.records import RECORD_SUFFIXES, Problem, read_records
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
        return self.comm.scatter(items, root=0) if self.comm is not None else items[0]

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
        return World(rank=0, size=1, idle=env_rank != 0,
                     note=f"{env_size} processes were launched but mpi4py cannot be imported ({err}); rank 0 reads every record")
    comm = MPI.COMM_WORLD
    if comm.Get_size() != env_size:
        # e.g. `srun` without an MPI plugin this mpi4py's MPI understands: every process is a singleton
        return World(rank=0, size=1, idle=env_rank != 0,
                     note=f"the launcher started {env_size} processes but MPI sees a world of {comm.Get_size()} "
                          "(try `srun --mpi=pmi2` or mpiexec); launcher rank 0 reads every record")
    return World(rank=comm.Get_rank(), size=comm.Get_size(), comm=comm)


# --- the work ---------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One language's score on rank 0 (a NamedTuple: a million are built per large run)."""

    score: float
    metrics: dict[str, float]
    file: int
    """Index into Gathered.files."""
    line: int | None
    """Line in a .jsonl shard, None for a one-record file."""


@dataclass(frozen=True, kw_only=True)
class Gathered:
    """Every valid record of a run, grouped, plus what was wrong with the rest."""

    values: Mapping[GroupKey, Mapping[CellKey, Entry]]
    """(split, arm, target) -> (seed, lang) -> Entry."""
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

    def where(self, entry: Entry) -> str:
        path = self.files[entry.file]
        return path if entry.line is None else f"{path}:{entry.line}"


def list_record_files(results_dir: str | os.PathLike) -> list[str]:
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
    """Read, validate and group one rank's files: {'groups', 'problems', 'n_records'}.

    Groups map (split, arm, target) to rows (seed, lang, score, metrics, file index, line) in file
    order; a plain dict of tuples pickles small and fast for the gather.
    """
    groups: dict[GroupKey, list[tuple]] = {}
    problems: list[Problem] = []
    n_records = 0
    for index, name in enumerate(names, start=offset):
        for line, item in read_records(os.path.join(results_dir, name), qa_convention=qa_convention):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            n_records += 1
            rows = groups.get((item.split, item.arm, item.target))
            if rows is None:
                rows = groups[(item.split, item.arm, item.target)] = []
            rows.append((item.seed, item.lang, item.score, item.metrics, index, line))
    return {"groups": groups, "problems": problems, "n_records": n_records}


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
    blocks = None
    names: list[str] = []
    if world.rank == 0:
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
    if task_error is not None:
        raise task_error
    failed = [p["error"] for p in payloads if "error" in p]
    if failed:
        raise GatherError("reading records failed:\n" + "\n".join(failed))
    clock = time.perf_counter()
    gathered = _merge(folder, names, payloads, world.size)
    timings["merge"] = time.perf_counter() - clock
    return Gathered(**{**gathered, "timings": timings}), task_result


_new_entry = tuple.__new__


def _merge(folder: str, names: list[str], payloads: list[dict[str, Any]], ranks: int) -> dict[str, Any]:
    files = tuple(os.path.join(folder, name) for name in names)
    values: dict[GroupKey, dict[CellKey, Entry]] = {}
    problems: list[Problem] = []
    duplicates: list[str] = []
    conflicted: set[tuple[GroupKey, CellKey]] = set()

    def where(index: int, line: int | None) -> str:
        return files[index] if line is None else f"{files[index]}:{line}"

    for payload in payloads:  # rank order == file order, so "first" means first in the sorted listing
        problems.extend(payload["problems"])
        for group, rows in payload["groups"].items():
            cells = values.get(group)
            if cells is None:
                cells = values[group] = {}
            for seed, lang, score, metrics, index, line in rows:
                cell = (seed, lang)
                if (group, cell) in conflicted:
                    continue
                first = cells.get(cell)
                if first is None:
                    cells[cell] = _new_entry(Entry, (score, metrics, index, line))  # tuple.__new__: no Python-level __new__
                elif first.score == score:
                    duplicates.append(f"{where(index, line)} repeats {where(first.file, first.line)} (same score; ignored)")
                else:
                    split, arm, target = group
                    key = f"eval.{arm}.{target}.s{seed}.{lang}"
                    message = (f"conflicting records for {key} ({split}): {score} here, {first.score} in "
                               f"{where(first.file, first.line)}; neither is used")
                    problems.append(Problem(path=files[index], line=line, message=message, key=key, split=split))
                    del cells[cell]
                    conflicted.add((group, cell))
    problems.sort(key=lambda p: (p.path, p.line or 0))
    n_records = sum(p["n_records"] for p in payloads)
    return {"values": values, "files": files, "problems": tuple(problems), "duplicates": tuple(duplicates),
            "n_records": n_records, "ranks": ranks}
