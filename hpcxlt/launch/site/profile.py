"""Slurm site profiles: what to ask the scheduler for, per stage, validated before anything is submitted.

A profile is a YAML file (slurm/sites/*.yaml) with site-wide settings, `defaults` for every stage's
resources, and per-stage overrides under `stages` (intermediate, target, eval, aggregate). Values that
sbatch would reject (a bad time or memory format, negative counts, a throttle larger than the array
size, ...) fail here with the file and key, so a mistake never reaches the queue half-submitted.
Standard library + PyYAML only: `hpcxlt submit --dry-run` validates a profile on a login node.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpcxlt.config import ConfigError, from_dict
from hpcxlt.config.load import read_yaml

SITE_STAGES = ("intermediate", "target", "eval", "aggregate")
TRAIN_STAGES = ("intermediate", "target")

# sbatch --time: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S" (sbatch(1), option --time).
_TIME_FORMS = (
    (re.compile(r"^(\d+)$"), ("m",)),
    (re.compile(r"^(\d+):(\d+)$"), ("m", "s")),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), ("h", "m", "s")),
    (re.compile(r"^(\d+)-(\d+)$"), ("d", "h")),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), ("d", "h", "m")),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"), ("d", "h", "m", "s")),
)
# sbatch --mem: an integer with an optional unit K, M (default), G or T.
_MEM = re.compile(r"^(\d+)([KMGTkmgt]?)$")
# --gres: name[:type][:count], comma separated (e.g. gpu:a100:4).
_GRES_ITEM = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?::([A-Za-z0-9_.-]+))?(?::(\d+))?$")
# host-name suffix (letters, digits, '-', '.') and NCCL_SOCKET_IFNAME syntax: an optional '^' (exclude) or
# '=' (exact) prefix, then comma-separated interface names or prefixes (NCCL env docs, NCCL_SOCKET_IFNAME).
_HOST_SUFFIX = re.compile(r"^[A-Za-z0-9.-]*$")
_IFNAME = re.compile(r"^[\^=]?[A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*$")
# partition/account/qos/wckey names; partitions may be a comma-separated list.
_NAME = re.compile(r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$")


class SiteError(ConfigError):
    """A site profile is wrong; the message names the file and key and what is allowed."""


@dataclass(frozen=True, kw_only=True)
class StageResources:
    """What one job of a stage asks Slurm for."""

    partition: str | None = None
    """Partition (or comma-separated partitions); None uses the cluster's default partition."""
    account: str | None = None
    """Account to charge (sbatch --account); None uses the user's default."""
    qos: str | None = None
    """Quality of service (sbatch --qos)."""
    constraint: str | None = None
    """Node features required (sbatch --constraint), e.g. 'a100&ib'."""
    time: str = "01:00:00"
    """Time limit in a Slurm format: 'M', 'M:S', 'H:M:S', 'D-H', 'D-H:M' or 'D-H:M:S' (quote it in YAML)."""
    nodes: int = 1
    """Nodes per job (training jobs may span nodes; eval and aggregate use one)."""
    gpus_per_node: int = 0
    """GPUs per node (sbatch --gpus-per-node); 0 for CPU jobs. Leave 0 when `gres` names the GPUs."""
    gres: str | None = None
    """Generic resources instead of gpus_per_node, e.g. 'gpu:a100:4' (sbatch --gres)."""
    tasks_per_node: int | None = None
    """Processes per node; None: one per GPU for training (DeepSpeed runs one rank per GPU), else 1."""
    cpus_per_task: int = 1
    """CPU cores per process (data loading, tokenization)."""
    mem: str | None = None
    """Memory per node in sbatch format: an integer with unit K, M, G or T (e.g. '64G'); '0' takes all."""
    exclusive: bool = False
    """Ask for whole nodes (sbatch --exclusive)."""
    sbatch_extra: Mapping[str, str] = field(default_factory=dict)
    """Further sbatch options without the leading '--', e.g. {reservation: my-res}."""

    def gpus(self) -> int:
        """GPUs per node, from gpus_per_node or the gpu entry of gres."""
        if self.gpus_per_node:
            return self.gpus_per_node
        for item in (self.gres or "").split(","):
            match = _GRES_ITEM.match(item)
            if match and match.group(1) == "gpu":
                return int(match.group(3) or 1)
        return 0

    def ntasks_per_node(self, stage: str) -> int:
        """Processes per node: as set, else one per GPU for training stages and 1 for eval/aggregate."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return max(1, self.gpus()) if stage in TRAIN_STAGES else 1

    def time_minutes(self) -> int:
        return parse_time_minutes(self.time)

    def sbatch_options(
        self, stage: str, *, nodes: int | None = None, time_minutes: int | None = None
    ) -> dict[str, Any]:
        """The one rendering of what a job of `stage` asks Slurm for: sbatch long option -> value (True: a
        flag). Submission, its dry run and `hpcxlt doctor` all read it, so a new resource is added here only.
        `nodes` and `time_minutes` override the profile's (doctor's short preflight job)."""
        options: dict[str, Any] = {
            "nodes": self.nodes if nodes is None else nodes,
            "ntasks-per-node": self.ntasks_per_node(stage),
            "cpus-per-task": self.cpus_per_task,
            "time": self.time_minutes() if time_minutes is None else time_minutes,  # whole minutes
        }
        for key in ("partition", "account", "qos", "constraint", "gres"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.gpus_per_node:
            options["gpus-per-node"] = self.gpus_per_node
        if self.mem is not None:
            options["mem"] = self.mem
        if self.exclusive:
            options["exclusive"] = True
        options.update(self.sbatch_extra)
        return options


@dataclass(frozen=True, kw_only=True)
class SiteProfile:
    """A Slurm site: scheduler limits, node setup and per-stage resources."""

    name: str
    """Short name of the site (shown by `submit --dry-run`)."""
    description: str = ""
    """Free text."""
    setup: tuple[str, ...] = ()
    """Shell lines run before the job starts (module load ..., source venv/bin/activate, exports)."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which Slurm sends SIGUSR2 (checkpoint + requeue)."""
    max_array_size: int = 1001
    """The cluster's MaxArraySize (scontrol show config): larger arrays are split."""
    array_throttle: int | None = None
    """At most this many tasks of one array run at once (sbatch --array=...%N); None: no limit."""
    max_requeues: int = 3
    """Requeues after preemption or time limit per job before its cells are marked failed."""
    max_retries: int = 2
    """Automatic retries of a job whose process was killed (OOM, segfault) before its cells are marked failed."""
    retry_backoff_s: int = 60
    """Seconds before the first automatic retry may start; doubles with each further retry."""
    max_queued_jobs: int | None = None
    """The site's cap on this user's queued jobs, array tasks counted (MaxSubmitJobs); larger grids go in waves."""
    max_running: int | None = None
    """At most this many tasks of each array run at once (sbatch --array=...%N, with array_throttle)."""
    mpi_launcher: str = "mpiexec -n {ntasks}"
    """Command prefix that starts the aggregation's MPI ranks inside its allocation; {ntasks} is filled in."""
    offline: bool = False
    """Compute nodes cannot reach the Hugging Face hub: configs must read prepared data (`hpcxlt prepare`)."""
    dist_timeout_s: int = 1800
    """Seconds a rank waits at the rendezvous or in one collective before the job fails (torch's default: 30 min)."""
    master_addr_suffix: str = ""
    """Appended to rank 0's host name for the rendezvous, e.g. 'i' where the InfiniBand names are gpu01i."""
    network_interface: str | None = None
    """Interface for NCCL and gloo traffic (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME), e.g. 'ib0'; None: auto."""
    gpu_memory_gb: float | None = None
    """Memory of one GPU in GiB (nvidia-smi's memory.total / 1024, e.g. 40 or 80 for an A100); None: unknown, not checked."""
    gpus: int | None = None
    """GPUs the sweep may use at once (a fair-share or allocation limit): `hpcxlt plan`'s makespan; None: unknown."""
    disk_quota_gb: float | None = None
    """Disk quota of the run directory's file system in GiB: `submit` refuses a grid whose estimate exceeds it."""
    stages: Mapping[str, StageResources] = field(default_factory=dict)
    """Resources per stage (intermediate, target, eval, aggregate), defaults already applied."""
    source: str | None = None
    """File the profile was read from."""

    def stage(self, name: str) -> StageResources:
        return self.stages[name]

    def network_exports(self) -> list[str]:
        """Shell lines giving every job the site's rendezvous settings (read by `hpcxlt.launcher_env`)."""
        lines = [f"export HPCXLT_DIST_TIMEOUT_S={self.dist_timeout_s}"]
        if self.master_addr_suffix:
            lines.append(f"export HPCXLT_MASTER_ADDR_SUFFIX={self.master_addr_suffix}")
        if self.network_interface:
            lines.append(f"export NCCL_SOCKET_IFNAME={shlex.quote(self.network_interface)}")
            # gloo takes plain names only (no NCCL '^' exclusion or '=' exact-match prefix)
            if not self.network_interface.startswith("^"):
                lines.append(f"export GLOO_SOCKET_IFNAME={shlex.quote(self.network_interface.lstrip('='))}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = {
            k: {**dataclasses.asdict(v), "sbatch_extra": dict(v.sbatch_extra)} for k, v in self.stages.items()
        }
        data["setup"] = list(self.setup)
        return data


# what a profile file may set: SiteProfile's fields (not `source`, which records the file) and `defaults`
_TOP_KEYS = tuple(f.name for f in dataclasses.fields(SiteProfile) if f.name != "source") + ("defaults",)


def parse_time_minutes(value: str) -> int:
    """Slurm time string -> whole minutes (seconds round up, as Slurm does); ValueError when malformed."""
    text = str(value).strip()
    for pattern, units in _TIME_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        parts = dict(zip(units, (int(g) for g in match.groups())))
        if len(units) > 1:
            # in multi-field forms only the leading field may exceed its range
            limits = {"h": 24, "m": 60, "s": 60}
            for unit in units[1:]:
                if parts[unit] >= limits[unit]:
                    raise ValueError(f"{unit!r} field {parts[unit]} is out of range in {text!r}")
        seconds = parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
        return math.ceil(seconds / 60)
    raise ValueError(f"{text!r} is not a Slurm time")


def _check_stage(res: StageResources, stage: str, where: str) -> None:
    def bad(key: str, message: str) -> SiteError:
        return SiteError(f"{where}.{key}: {message}")

    if res.partition is not None and not _NAME.match(res.partition):
        raise bad(
            "partition",
            f"{res.partition!r} is not a partition name or a comma-separated list of them (letters, "
            "digits, '_', '.', '-')",
        )
    for key in ("account", "qos"):
        value = getattr(res, key)
        if value is not None and (not _NAME.match(value) or "," in value):
            raise bad(key, f"{value!r} is not a valid Slurm {key} name (one name: letters, digits, '_', '.', '-')")
    if res.constraint is not None and (not res.constraint.strip() or any(c.isspace() for c in res.constraint)):
        raise bad(
            "constraint", f"{res.constraint!r} must be a non-empty feature expression without spaces, e.g. 'a100&ib'"
        )
    try:
        minutes = parse_time_minutes(res.time)
    except ValueError as err:
        raise bad(
            "time", f"{err}; use 'M', 'M:S', 'H:M:S', 'D-H', 'D-H:M' or 'D-H:M:S', e.g. '04:00:00' or '1-12:00:00'"
        ) from None
    if minutes <= 0:
        raise bad("time", f"{res.time!r} is zero; give a positive time limit")
    if res.nodes < 1:
        raise bad("nodes", f"must be >= 1, got {res.nodes}")
    if res.gpus_per_node < 0:
        raise bad("gpus_per_node", f"must be >= 0, got {res.gpus_per_node}")
    if res.tasks_per_node is not None and res.tasks_per_node < 1:
        raise bad("tasks_per_node", f"must be >= 1, got {res.tasks_per_node}")
    if res.cpus_per_task < 1:
        raise bad("cpus_per_task", f"must be >= 1, got {res.cpus_per_task}")
    if res.gres is not None:
        for item in res.gres.split(","):
            if not _GRES_ITEM.match(item):
                raise bad("gres", f"{res.gres!r} is not name[:type][:count][,...], e.g. 'gpu:a100:4'")
        if res.gpus_per_node and any(i.split(":")[0] == "gpu" for i in res.gres.split(",")):
            raise bad("gres", "names GPUs and gpus_per_node is set too; give the GPUs in one of the two")
    if res.mem is not None and not _MEM.match(res.mem):
        raise bad("mem", f"{res.mem!r} is not an sbatch memory size; use an integer with unit K, M, G or T, e.g. '64G'")
    for key in res.sbatch_extra:
        if not re.match(r"^[a-z][a-z0-9-]*$", key):
            raise bad(f"sbatch_extra.{key}", "option names are long sbatch options without '--', e.g. 'reservation'")
        if key in ("array", "dependency", "output", "error", "signal", "job-name", "requeue"):
            raise bad(f"sbatch_extra.{key}", "is set by hpcxlt itself and cannot be overridden")
    gpus, tasks = res.gpus(), res.ntasks_per_node(stage)
    if stage in TRAIN_STAGES and gpus and tasks != gpus:
        raise bad(
            "tasks_per_node", f"training runs one process per GPU: expected {gpus} (the GPUs per node), got {tasks}"
        )
    if stage == "eval" and (res.nodes != 1 or tasks != 1):
        raise bad(
            "nodes" if res.nodes != 1 else "tasks_per_node",
            "an evaluation job is one process on one node (it loads the model once); use nodes: 1, tasks_per_node: 1",
        )
    if stage == "aggregate" and res.nodes != 1:
        raise bad(
            "nodes", "the aggregation runs its MPI ranks on one node; use nodes: 1 and tasks_per_node for the ranks"
        )


def _no_newlines(data: Any, where: str) -> None:
    # one value with a newline would end an #SBATCH line and start a shell command
    if isinstance(data, str) and ("\n" in data or "\r" in data):
        raise SiteError(f"{where}: must be one line")
    if isinstance(data, Mapping):
        for key, value in data.items():
            _no_newlines(value, f"{where}.{key}")


def parse_site(data: Any, source: str = "site profile") -> SiteProfile:
    """Raw YAML data -> validated SiteProfile; every error starts with `source` and names the key."""
    if not isinstance(data, Mapping):
        raise SiteError(f"{source}: expected a mapping of site settings, got {type(data).__name__}")
    try:
        return _parse(data, source)
    except SiteError:
        raise
    except ConfigError as err:  # from from_dict: unknown key, wrong type
        raise SiteError(f"{source}: {err}") from None


def _parse(data: Mapping[str, Any], source: str) -> SiteProfile:

    for key in data:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SiteError(f"{source}: {key}: unknown key{hint}; allowed: {', '.join(_TOP_KEYS)}")
    try:
        _no_newlines({k: v for k, v in data.items() if k != "setup"}, "")
    except SiteError as err:
        raise SiteError(f"{source}: {str(err).lstrip('.')}") from None
    defaults = data.get("defaults") or {}
    stages = data.get("stages") or {}
    for where, value in (("defaults", defaults), ("stages", stages)):
        if not isinstance(value, Mapping):
            raise SiteError(f"{source}: {where}: expected a mapping, got {value!r}")
    for stage, value in stages.items():
        if stage not in SITE_STAGES:
            raise SiteError(f"{source}: stages.{stage}: unknown stage; allowed: {', '.join(SITE_STAGES)}")
        if not isinstance(value, Mapping):
            raise SiteError(f"{source}: stages.{stage}: expected a mapping of resources, got {value!r}")
    for where, section in [("defaults", defaults)] + [(f"stages.{s}", v) for s, v in stages.items()]:
        for key, value in section.items():
            if key == "time" and not isinstance(value, str):
                raise SiteError(
                    f"{source}: {where}.time: got {value!r}; write the time limit as a quoted string such as "
                    "'04:00:00' (YAML reads an unquoted 4:00:00 as a base-60 number)"
                )
    from_dict(StageResources, defaults, "defaults")  # unknown keys in defaults are named as such
    resolved: dict[str, StageResources] = {}
    for stage in SITE_STAGES:
        where = f"stages.{stage}" if stage in stages else "defaults"
        merged = {**defaults, **stages.get(stage, {})}
        try:
            res = from_dict(StageResources, merged, f"stages.{stage}")
            _check_stage(res, stage, where)
        except ConfigError as err:
            raise SiteError(f"{source}: {err}") from None
        resolved[stage] = res
    top = {k: v for k, v in data.items() if k not in ("defaults", "stages")}
    if "name" not in top:
        raise SiteError(f"{source}: name: required key is missing")
    if "setup" in top:
        if not isinstance(top["setup"], (list, tuple)) or not all(isinstance(x, str) for x in top["setup"]):
            raise SiteError(f"{source}: setup: expected a list of shell lines, got {top['setup']!r}")
        for i, line in enumerate(top["setup"]):
            if "\n" in line:
                raise SiteError(f"{source}: setup[{i}]: one shell line per list item")
    profile = from_dict(SiteProfile, {**top, "stages": {}}, "")
    profile = dataclasses.replace(profile, stages=resolved, source=source)
    _check_site(profile, source)
    return profile


def _check_site(site: SiteProfile, source: str) -> None:
    if site.signal_delay_s < 0:
        raise SiteError(f"{source}: signal_delay_s: must be >= 0, got {site.signal_delay_s}")
    # MaxArraySize 1 would allow only task 0; Slurm caps it at 4,000,001.
    if not 1 <= site.max_array_size <= 4_000_001:
        raise SiteError(
            f"{source}: max_array_size: must be in [1, 4000001] (Slurm's MaxArraySize), got {site.max_array_size}"
        )
    if site.array_throttle is not None:
        if site.array_throttle < 1:
            raise SiteError(f"{source}: array_throttle: must be >= 1 (sbatch --array=...%N), got {site.array_throttle}")
        if site.array_throttle > site.max_array_size:
            raise SiteError(
                f"{source}: array_throttle: {site.array_throttle} is larger than max_array_size "
                f"{site.max_array_size}; an array can never run more tasks than it has"
            )
    if site.max_retries < 0 or site.retry_backoff_s < 0:
        raise SiteError(f"{source}: max_retries and retry_backoff_s must be >= 0")
    if site.max_queued_jobs is not None and site.max_queued_jobs < 2:
        raise SiteError(
            f"{source}: max_queued_jobs: must be >= 2 (a wave needs a job and its feeder), got {site.max_queued_jobs}"
        )
    if site.max_running is not None and site.max_running < 1:
        raise SiteError(f"{source}: max_running: must be >= 1, got {site.max_running}")
    for key in ("gpu_memory_gb", "gpus", "disk_quota_gb"):
        value = getattr(site, key)
        if value is not None and value <= 0:
            raise SiteError(f"{source}: {key}: must be > 0 (or left out: unknown), got {value}")
    if site.max_requeues < 0:
        raise SiteError(f"{source}: max_requeues: must be >= 0, got {site.max_requeues}")
    if site.dist_timeout_s < 1:
        raise SiteError(f"{source}: dist_timeout_s: must be >= 1 second, got {site.dist_timeout_s}")
    if not _HOST_SUFFIX.match(site.master_addr_suffix):
        raise SiteError(
            f"{source}: master_addr_suffix: {site.master_addr_suffix!r} may hold only letters, digits, '-' and '.'"
        )
    if site.network_interface is not None and not _IFNAME.match(site.network_interface):
        raise SiteError(
            f"{source}: network_interface: {site.network_interface!r} is not an interface name or "
            "comma-separated list (e.g. 'ib0', 'eth0', '^docker,lo')"
        )
    if "{ntasks}" not in site.mpi_launcher and not site.mpi_launcher.strip().startswith("srun"):
        raise SiteError(
            f"{source}: mpi_launcher: {site.mpi_launcher!r} must contain {{ntasks}} (or be an srun command)"
        )
    for stage, res in site.stages.items():
        if site.signal_delay_s >= res.time_minutes() * 60:
            raise SiteError(
                f"{source}: signal_delay_s: {site.signal_delay_s} s is not shorter than the {stage} time limit "
                f"{res.time!r}; the checkpoint signal would come before the job starts"
            )


def load_site(path: str | os.PathLike) -> SiteProfile:
    """Read and validate a site profile YAML file."""
    return parse_site(read_yaml(path, "site profile", SiteError), str(path))
