"""Who started this process, and where it sits: the one reader of launcher environments.

torchrun (and the `deepspeed` launcher), srun (Slurm), mpiexec (MPICH, Open MPI) and a plain single
process each announce rank and world size in their own variables. Training (`train.dist`, which builds
the torch.distributed rendezvous from `detect()`) and the MPI gather (`aggregate.mpi_world`, which needs
only `launched_world()`) both read them here, so the two can never disagree about a job.
Standard library only: the job worker asks "am I rank 0?" before torch is imported.

Site settings reach the job as environment variables (`launch.site` exports them in every job):
HPCXLT_MASTER_ADDR_SUFFIX is appended to the host name of rank 0 when the address comes from Slurm's
node list (sites whose fast network has its own host names, e.g. `gpu01` -> `gpu01i` for InfiniBand).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

MASTER_ADDR_SUFFIX_VAR = "HPCXLT_MASTER_ADDR_SUFFIX"
DIST_TIMEOUT_VAR = "HPCXLT_DIST_TIMEOUT_S"
DEFAULT_DIST_TIMEOUT_S = 1800
"""torch.distributed's own default (30 minutes) when the site sets no dist_timeout_s."""

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


def launcher_of(env: Mapping[str, str] | None = None) -> str:
    """'torchrun', 'mpi', 'slurm' or 'single': which launcher's variables describe this process.

    Order matters: torchrun/deepspeed set RANK explicitly; mpiexec inside a Slurm allocation
    inherits the batch step's SLURM_PROCID=0 in every rank, so MPI variables win over Slurm; the
    Slurm batch step itself (no srun, no SLURM_STEP_ID) is one process whatever SLURM_NTASKS says.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun"
    if "OMPI_COMM_WORLD_RANK" in env:
        return "mpi"
    if "PMI_RANK" in env and "PMI_SIZE" in env:
        # srun --mpi=pmi2 sets PMI_* (without MPICH's local-rank variables) and SLURM_*
        srun_pmi = "MPI_LOCALRANKID" not in env and env["PMI_SIZE"] != "1" and "SLURM_LOCALID" in env
        return "slurm" if srun_pmi else "mpi"
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        return "slurm"
    return "single"


def launched_world(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, size) as the launcher announced it, or None when no launcher started this process."""
    env = os.environ if env is None else env
    launcher = launcher_of(env)
    if launcher == "torchrun":
        return _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if launcher == "mpi":
        if "OMPI_COMM_WORLD_RANK" in env:
            return _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        return _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
    if launcher == "slurm":
        return _int(env, "SLURM_PROCID"), _slurm_world(env)
    return None


def dist_timeout_s(env: Mapping[str, str] | None = None) -> int:
    """Seconds a rank waits at the rendezvous or in one collective before failing (site key dist_timeout_s)."""
    env = os.environ if env is None else env
    raw = env.get(DIST_TIMEOUT_VAR)
    if raw is None or raw == "":
        return DEFAULT_DIST_TIMEOUT_S
    try:
        value = int(raw)
    except ValueError:
        raise DistError(
            f"environment variable {DIST_TIMEOUT_VAR}={raw!r} is not an integer number of seconds"
        ) from None
    if value < 1:
        raise DistError(f"environment variable {DIST_TIMEOUT_VAR}={raw!r} must be >= 1")
    return value


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """Read rank, world size and rendezvous from the launcher's environment (see `launcher_of`)."""
    env = os.environ if env is None else env
    launcher = launcher_of(env)
    if launcher == "torchrun":
        world = _int(env, "WORLD_SIZE")
        addr = env.get("MASTER_ADDR", LOOPBACK)
        port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else job_port("torchrun", os.getppid())
        return _checked(
            DistEnv(
                launcher="torchrun",
                rank=_int(env, "RANK"),
                world_size=world,
                local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                master_addr=addr,
                master_port=port,
            )
        )
    if launcher == "slurm":
        return _slurm(env)
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local, local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"), _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_orte_ess_jobid")
        return _mpi(env, rank, world, local, local_size, job)
    if launcher == "mpi":
        rank, world = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        local = _int(env, "MPI_LOCALRANKID") if "MPI_LOCALRANKID" in env else (rank if world == 1 else -1)
        local_size = _int(env, "MPI_LOCALNRANKS") if "MPI_LOCALNRANKS" in env else (1 if world == 1 else -1)
        return _mpi(env, rank, world, local, local_size, None)
    addr = env.get("MASTER_ADDR", LOOPBACK)
    port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else job_port("single", os.getpid())
    return DistEnv(launcher="single", rank=0, world_size=1, local_rank=0, master_addr=addr, master_port=port)


def _slurm_world(env: Mapping[str, str]) -> int:
    if env.get("SLURM_STEP_NUM_TASKS"):
        return _int(env, "SLURM_STEP_NUM_TASKS")
    return _int(env, "SLURM_NTASKS") if env.get("SLURM_NTASKS") else 1


def _node_addr(env: Mapping[str, str], nodelist: str) -> str:
    """Rank 0's address from a Slurm node list: its first host, with the site's suffix for the fast network."""
    return first_host(nodelist) + env.get(MASTER_ADDR_SUFFIX_VAR, "")


def _slurm(env: Mapping[str, str]) -> DistEnv:
    world = _slurm_world(env)
    nodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_NNODES", "1")))
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    elif nodes <= 1:
        addr = LOOPBACK  # one node: no name resolution needed (the local test cluster's node has no DNS name)
    else:
        if not nodelist:
            raise DistError("srun step spans several nodes but SLURM_STEP_NODELIST/SLURM_JOB_NODELIST is unset")
        addr = _node_addr(env, nodelist)
    port = (
        int(env["MASTER_PORT"])
        if "MASTER_PORT" in env
        else job_port("slurm", env.get("SLURM_JOB_ID", ""), env.get("SLURM_STEP_ID", ""))
    )
    return _checked(
        DistEnv(
            launcher="slurm",
            rank=_int(env, "SLURM_PROCID"),
            world_size=world,
            local_rank=_int(env, "SLURM_LOCALID"),
            master_addr=addr,
            master_port=port,
        )
    )


def _mpi(env: Mapping[str, str], rank: int, world: int, local: int, local_size: int, job: str | None) -> DistEnv:
    one_node = local_size == world
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    elif one_node:
        addr = LOOPBACK
    elif "SLURM_JOB_NODELIST" in env:
        addr = _node_addr(env, env["SLURM_JOB_NODELIST"])
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
    return _checked(
        DistEnv(
            launcher="mpi",
            rank=rank,
            world_size=world,
            local_rank=max(local, 0),
            master_addr=addr,
            master_port=port,
        )
    )


def _checked(d: DistEnv) -> DistEnv:
    if d.world_size < 1 or not 0 <= d.rank < d.world_size:
        raise DistError(f"{d.launcher}: rank {d.rank} is not in [0, world size {d.world_size})")
    if d.local_rank < 0:
        raise DistError(f"{d.launcher}: local rank {d.local_rank} is negative")
    return d
