"""`hpcxlt init-site OUT.yaml`: a commented site profile from what the cluster says about itself.

    discover() -> Cluster (from sinfo and sacctmgr; empty where a command is missing or says nothing)
    profile_text(cluster) -> the YAML text: every key commented, the cluster's own values filled in

It asks nothing: partitions, their GPUs (gres), CPUs, memory and time limits come from `sinfo`, the user's
accounts and QOS from `sacctmgr`. Training stages go to the partition with the most GPUs per node (the
default partition on a CPU cluster), evaluation to the same, the aggregation to the default partition.
What it cannot know (module lines, the venv, the network interface, the data folders) is left as a
commented example to fill in; `hpcxlt doctor --site OUT.yaml` then checks it on the nodes.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from dataclasses import dataclass, field


@dataclass
class Partition:
    name: str
    default: bool
    gpus_per_node: int
    gpu_type: str | None
    cpus_per_node: int
    mem_mb: int | None
    time_limit: str
    nodes: int


@dataclass
class Cluster:
    partitions: list[Partition] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    qos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _gpus(gres: str) -> tuple[int, str | None]:
    """GPUs per node and their type from sinfo's gres column ('gpu:a100:4(S:0-1),...', '(null)')."""
    for item in gres.split(","):
        match = re.match(r"gpu(?::([A-Za-z0-9_.-]+))?:(\d+)", item)
        if match:
            return int(match.group(2)), match.group(1)
    return 0, None


# GiB per GPU as nvidia-smi's memory.total / 1024 reports it, for gres types that name one memory size;
# A100, V100 and P100 come in two sizes and are only read from a size in the type's name ('a100_80g').
GPU_MEMORY_GIB = {
    "h100": 79.6,
    "h200": 140.4,
    "a40": 45.0,
    "l40": 45.0,
    "l40s": 45.0,
    "a30": 24.0,
    "l4": 22.5,
    "t4": 15.0,
}


def gpu_memory_gib(gpu_type: str | None) -> float | None:
    """GiB per GPU of a gres GPU type: a size in its name ('a100_80g', 'a100-40gb'), else `GPU_MEMORY_GIB`."""
    if not gpu_type:
        return None
    name = gpu_type.lower()
    match = re.search(r"(?:^|[^0-9])(\d{2,3})g(?:b)?(?:$|[^a-z0-9])", name)
    if match and 8 <= int(match.group(1)) <= 512:
        return float(match.group(1))
    return GPU_MEMORY_GIB.get(name)


def discover() -> Cluster:
    cluster = Cluster()
    out = _run(["sinfo", "-h", "-o", "%P|%G|%c|%m|%l|%D"])
    if out is None:
        cluster.notes.append("sinfo did not answer: partitions left as examples")
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        name, gres, cpus, mem, limit, nodes = parts
        gpus, kind = _gpus(gres)
        cluster.partitions.append(
            Partition(
                name=name.rstrip("*"),
                default=name.endswith("*"),
                gpus_per_node=gpus,
                gpu_type=kind,
                cpus_per_node=int(cpus) if cpus.isdigit() else 1,
                mem_mb=int(mem) if mem.isdigit() else None,
                time_limit=limit,
                nodes=int(nodes) if nodes.isdigit() else 1,
            )
        )
    assoc = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={getpass.getuser()}", "format=Account,QOS"])
    if assoc is None:
        cluster.notes.append("sacctmgr did not answer: account and qos left as examples")
    for line in (assoc or "").splitlines():
        account, _, qos = line.partition("|")
        if account and account not in cluster.accounts:
            cluster.accounts.append(account)
        for q in filter(None, qos.split(",")):
            if q not in cluster.qos:
                cluster.qos.append(q)
    return cluster


def profile_text(cluster: Cluster, name: str) -> str:
    default = next((p for p in cluster.partitions if p.default), cluster.partitions[0] if cluster.partitions else None)
    train = max(cluster.partitions, key=lambda p: (p.gpus_per_node, p.default), default=None)
    lines = [
        "# Site profile written by `hpcxlt init-site` from sinfo and sacctmgr on this cluster; check every value,",
        "# then `hpcxlt doctor --site THIS.yaml` runs one preflight job on the nodes (docs/multinode.md).",
        "# Partitions seen: "
        + (
            ", ".join(
                f"{p.name}{'*' if p.default else ''} ({p.gpus_per_node} GPU/node"
                + (f" {p.gpu_type}" if p.gpu_type else "")
                + f", {p.cpus_per_node} CPUs,"
                f" {p.nodes} nodes, limit {p.time_limit})"
                for p in cluster.partitions
            )
            or "none (sinfo did not answer)"
        ),
        *[f"# note: {note}" for note in cluster.notes],
        f"name: {name}",
        "description: written by hpcxlt init-site; edit me",
        "setup:                       # shell lines every job runs first: modules, the venv, caches",
        "  - export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false",
        "  # - module load cuda/12.4",
        "  # - source $HOME/venvs/hpcxlt/bin/activate",
        "signal_delay_s: 300          # seconds before the time limit: checkpoint and requeue",
        "max_array_size: 1001         # `scontrol show config | grep MaxArraySize`",
        "# max_queued_jobs: 500       # the site's MaxSubmitJobs for you, if any: larger grids go in waves",
        "# network_interface: ib0     # NCCL/gloo interface between nodes (doctor tells)",
        _gpu_memory_line(train),
        "# gpus: 32                   # GPUs the sweep may use at once: `hpcxlt plan --site`'s makespan",
        "# disk_quota_gb: 2000        # quota of the run directory's file system (GiB): submit refuses more",
        "defaults:",
    ]
    if default is not None:
        lines.append(f"  partition: {default.name}")
    if cluster.accounts:
        lines.append(
            f"  account: {cluster.accounts[0]}"
            + (f"          # others: {', '.join(cluster.accounts[1:])}" if len(cluster.accounts) > 1 else "")
        )
    else:
        lines.append("  # account: my-account")
    if cluster.qos:
        lines.append(
            f"  qos: {cluster.qos[0]}"
            + (f"          # others: {', '.join(cluster.qos[1:])}" if len(cluster.qos) > 1 else "")
        )
    lines += ['  time: "04:00:00"', "  cpus_per_task: 1", "stages:"]
    for stage in ("intermediate", "target"):
        lines.append(f"  {stage}:")
        if train is not None:
            lines.append(f"    partition: {train.name}")
            if train.gpus_per_node:
                lines.append(f"    gpus_per_node: {train.gpus_per_node}        # one training process per GPU")
            lines.append(f"    cpus_per_task: {max(1, train.cpus_per_node // max(1, train.gpus_per_node))}")
        lines.append('    time: "24:00:00"')
        lines.append("    nodes: 1                 # nodes per training job (ZeRO across them)")
    lines.append("  eval:")
    if train is not None:
        lines.append(f"    partition: {train.name}")
        if train.gpus_per_node:
            lines.append("    gpus_per_node: 1")
    lines += [
        '    time: "04:00:00"',
        "  aggregate:",
        "    tasks_per_node: 4          # MPI ranks of hpcxlt aggregate",
        '    time: "01:00:00"',
    ]
    return "\n".join(lines) + "\n"


def _gpu_memory_line(train: Partition | None) -> str:
    size = gpu_memory_gib(train.gpu_type if train is not None else None)
    if train is not None and size is not None:
        return f"gpu_memory_gb: {size:g}          # GiB per GPU of {train.gpu_type}: submit refuses what cannot fit"
    what = f"{train.gpu_type}: " if train is not None and train.gpu_type else ""
    return f"# gpu_memory_gb: 80          # GiB per GPU ({what}nvidia-smi's memory.total / 1024): submit refuses what cannot fit"


__all__ = ["Cluster", "Partition", "discover", "gpu_memory_gib", "profile_text"]
