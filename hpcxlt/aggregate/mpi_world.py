"""Who am I among the aggregation ranks: the MPI world of `hpcxlt aggregate`, with a single-rank fallback.

This is the only module that imports mpi4py, and only when a launcher (mpiexec, mpirun, srun) started
more than one process. Without one, or without mpi4py, the aggregation runs as a single rank.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcxlt.launcher_env import launched_world


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
        from mpi4py import MPI  # heavy: mpi4py
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
