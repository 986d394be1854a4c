"""Who am I in the job: rank helpers for torchrun, srun (Slurm), mpiexec and a plain single process.

`detect()` (from `hpcxlt.launcher_env`, the one reader of launcher environments) reads the launcher's
variables into a `DistEnv`; `export_env()` writes the variables
torch.distributed expects (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) before the
process group is created. The query helpers (`get_rank`, `barrier`, ...) work with or without an
initialized process group, so the same code runs in one process and in many.
"""

from __future__ import annotations

import os
from typing import Any

from hpcxlt.launcher_env import (  # noqa: F401  (the launcher reader, re-exported for train's callers)
    DistEnv,
    DistError,
    detect,
    dist_timeout_s,
    expand_hostlist,
    first_host,
    job_port,
)


def export_env(d: DistEnv, environ: Any = None) -> None:
    """Set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT for torch.distributed's env:// rendezvous."""
    environ = os.environ if environ is None else environ
    environ["RANK"] = str(d.rank)
    environ["WORLD_SIZE"] = str(d.world_size)
    environ["LOCAL_RANK"] = str(d.local_rank)
    environ["MASTER_ADDR"] = d.master_addr
    environ["MASTER_PORT"] = str(d.master_port)


# -- queries that work with and without a process group -------------------------------------------


def _initialized() -> bool:
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def get_rank() -> int:
    """Global rank; 0 when no process group is initialized."""
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_rank()
    return 0


def get_world_size() -> int:
    """Number of processes; 1 when no process group is initialized."""
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_world_size()
    return 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes shared files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank; a no-op in one process."""
    if _initialized():
        import torch.distributed as tdist

        tdist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` in every rank (picklable objects); identity in one process."""
    if not _initialized():
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


_control_group: Any = None


def _control() -> Any:
    """A gloo group for small host-side messages, so they never wait on (or sync) the GPU stream."""
    global _control_group
    import torch.distributed as tdist

    if tdist.get_backend() == "gloo":
        return None  # the default group is already host-side
    if _control_group is None:
        _control_group = tdist.new_group(backend="gloo")  # collective: every rank reaches this call together
    return _control_group


def max_over_ranks(value: int) -> int:
    """The largest `value` of all ranks, in every rank (e.g. a signal number that reached only some ranks).

    Runs over a CPU (gloo) group, so calling it once per optimizer step adds no host-device sync.
    """
    if not _initialized():
        return value
    import torch
    import torch.distributed as tdist

    box = torch.tensor([value], dtype=torch.int64)
    tdist.all_reduce(box, op=tdist.ReduceOp.MAX, group=_control())
    return int(box.item())


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order; [obj] in one process."""
    if not _initialized():
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj, group=_control())  # host-side: no GPU tensors for a few file names
    return out
