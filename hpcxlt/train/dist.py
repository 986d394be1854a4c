"""Who am I in the job: rank helpers for torchrun, srun (Slurm), mpiexec and a plain single process.

`detect()` reads the launcher's environment into a `DistEnv`; `export_env()` writes the variables
torch.distributed expects (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) before the
process group is created. The query helpers (`get_rank`, `barrier`, ...) work with or without an
initialized process group, so the same code runs in one process and in many.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

LOOPBACK = "127.0.0.1"
PORT_BASE = 20000
PORT_SPAN = 12000
"""Deterministic ports fall in [20000, 32000): above the registered ports most services use, and below
Linux's ephemeral range (32768-60999 by default), where any outgoing connection may hold a port at the
moment a job's rendezvous wants to listen on it (EADDRINUSE, seen on the local cluster)."""


class DistError(RuntimeError):
    """The launcher's environment is inconsistent or incomplete."""


@dataclass(frozen=True, kw_only=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) job."""

    launcher: str
    """'torchrun' (also the `deepspeed` launcher), 'slurm' (srun), 'mpi' (mpiexec: MPICH or Open MPI) or 'single'."""
    rank: int
    """Global rank, 0 .. world_size-1."""
    world_size: int
    """Number of processes in the job."""
    local_rank: int
    """Rank among the processes on this node (selects the GPU)."""
    master_addr: str
    """Address of rank 0 for the rendezvous."""
    master_port: int
    """TCP port of the rendezvous, the same in every rank of one job."""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def job_port(*parts: object) -> int:
    """A port derived from the job's identity, so every rank computes the same one without talking."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def expand_hostlist(nodelist: str) -> list[str]:
    """Expand a Slurm host list such as 'gpu[01-03,07],login1' (what `scontrol show hostnames` prints)."""
    hosts: list[str] = []
    # split on commas that are not inside brackets
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", nodelist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)
                hosts += [f"{prefix}{n:0{width}d}{suffix}" for n in range(int(lo), int(hi) + 1)]
            else:
                hosts.append(f"{prefix}{part}{suffix}")
    # a suffix may itself hold a bracket expression (rare: 'a[1-2]b[3-4]')
    if any("[" in h for h in hosts):
        return [x for h in hosts for x in expand_hostlist(h)]
    return hosts


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list; `scontrol show hostnames` when available, else our parser."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=20, check=True
            ).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    hosts = expand_hostlist(nodelist)
    if not hosts:
        raise DistError(f"SLURM node list {nodelist!r} names no host")
    return hosts[0]


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise DistError(f"environment variable {name}={env[name]!r} is not an integer") from None


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """Read rank, world size and rendezvous from the launcher's environment.

    Order matters: torchrun/deepspeed set RANK explicitly; mpiexec inside a Slurm allocation
    inherits the batch step's SLURM_PROCID=0 in every rank, so MPI variables win over Slurm; the
    Slurm batch step itself (no srun, no SLURM_STEP_ID) is one process whatever SLURM_NTASKS says.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        addr = env.get("MASTER_ADDR", LOOPBACK)
        port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else job_port("torchrun", os.getppid())
        return _checked(DistEnv(
            launcher="torchrun", rank=_int(env, "RANK"), world_size=world,
            local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0, master_addr=addr, master_port=port,
        ))
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local, local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"), _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_orte_ess_jobid")
        return _mpi(env, rank, world, local, local_size, job)
    if "PMI_RANK" in env and "PMI_SIZE" in env:
        rank, world = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        local = _int(env, "MPI_LOCALRANKID") if "MPI_LOCALRANKID" in env else (rank if world == 1 else -1)
        local_size = _int(env, "MPI_LOCALNRANKS") if "MPI_LOCALNRANKS" in env else (1 if world == 1 else -1)
        if local < 0 and "SLURM_LOCALID" in env:  # srun --mpi=pmi2 sets PMI_* and SLURM_*
            return _slurm(env)
        return _mpi(env, rank, world, local, local_size, None)
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        return _slurm(env)
    addr = env.get("MASTER_ADDR", LOOPBACK)
    port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else job_port("single", os.getpid())
    return DistEnv(launcher="single", rank=0, world_size=1, local_rank=0, master_addr=addr, master_port=port)


def _slurm(env: Mapping[str, str]) -> DistEnv:
    world = _int(env, "SLURM_STEP_NUM_TASKS") if "SLURM_STEP_NUM_TASKS" in env else _int(env, "SLURM_NTASKS")
    nodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_NNODES", "1")))
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    elif nodes <= 1:
        addr = LOOPBACK  # one node: no name resolution needed (the local test cluster's node has no DNS name)
    else:
        if not nodelist:
            raise DistError("srun step spans several nodes but SLURM_STEP_NODELIST/SLURM_JOB_NODELIST is unset")
        addr = first_host(nodelist)
    port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else job_port(
        "slurm", env.get("SLURM_JOB_ID", ""), env.get("SLURM_STEP_ID", "")
    )
    return _checked(DistEnv(
        launcher="slurm", rank=_int(env, "SLURM_PROCID"), world_size=world, local_rank=_int(env, "SLURM_LOCALID"),
        master_addr=addr, master_port=port,
    ))


def _mpi(env: Mapping[str, str], rank: int, world: int, local: int, local_size: int, job: str | None) -> DistEnv:
    one_node = local_size == world
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    elif one_node:
        addr = LOOPBACK
    elif "SLURM_JOB_NODELIST" in env:
        addr = first_host(env["SLURM_JOB_NODELIST"])
    else:
        raise DistError(
            "mpiexec across several nodes outside Slurm: set MASTER_ADDR to rank 0's host "
            "(e.g. mpiexec -genv MASTER_ADDR $(hostname) ...)"
        )
    if "MASTER_PORT" in env:
        port = int(env["MASTER_PORT"])
    elif job:
        port = job_port("mpi", job)
    elif "SLURM_JOB_ID" in env:
        port = job_port("mpi", env["SLURM_JOB_ID"], env.get("SLURM_STEP_ID", "batch"))
    elif one_node:
        # MPICH's hydra names no job id; all ranks on one node are children of the same proxy process
        port = job_port("mpi", os.getppid())
    else:
        raise DistError("mpiexec across several nodes outside Slurm: set MASTER_PORT (the same in every rank)")
    return _checked(DistEnv(
        launcher="mpi", rank=rank, world_size=world, local_rank=max(local, 0), master_addr=addr, master_port=port,
    ))


def _checked(d: DistEnv) -> DistEnv:
    if d.world_size < 1 or not 0 <= d.rank < d.world_size:
        raise DistError(f"{d.launcher}: rank {d.rank} is not in [0, world size {d.world_size})")
    if d.local_rank < 0:
        raise DistError(f"{d.launcher}: local rank {d.local_rank} is negative")
    return d


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
