"""`hpcxlt doctor`: one small preflight job shaped like a training job, judged node by node.

Before hundreds of jobs burn GPU-hours, this submits one job with a training stage's resources (nodes,
tasks per node, GPUs, partition, account, setup lines, rendezvous settings) running
`hpcxlt.launch.site.preflight` in every task, waits for it, and turns what each rank wrote into checks:

  submit      sbatch accepts the job (partition, account, QOS, resources exist)
  srun        every task of every node ran
  all_reduce  a torch.distributed all-reduce over all nodes completes within the timeout
  shared_dir  the run folder is writable on every node and each node sees the others' files
  versions    the nodes run the login node's Python and package versions
  paths       model and data folders of a config are readable on every node (offline sites)

Each failed check carries the fix users most often need. Only the Slurm client tools are used here; the
torch work happens in the job.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from hpcxlt.io import write_text_atomic
from hpcxlt.launch.site.preflight import environment
from hpcxlt.launch.site.profile import TRAIN_STAGES, SiteProfile
from hpcxlt.launch.slurm import queue
from hpcxlt.launcher_env import expand_hostlist

CHECKS = ("submit", "start", "srun", "all_reduce", "shared_dir", "versions", "paths")
PROBE_PREFIX = ".hpcxlt-doctor-"
END_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


@dataclass(frozen=True, kw_only=True)
class Check:
    """One finding: a check on one node (or '-' for the whole job)."""

    check: str
    """One of CHECKS."""
    node: str
    """Node name, or '-' when the check is about the job as a whole."""
    ok: bool | None
    """True passed, False failed, None not checked (and why in detail)."""
    detail: str = ""
    """What was seen."""
    fix: str = ""
    """What to change when it failed."""


@dataclass(frozen=True, kw_only=True)
class Diagnosis:
    """Everything `hpcxlt doctor` found."""

    site: str
    stage: str
    nodes: int
    tasks_per_node: int
    job_id: str | None
    checks: tuple[Check, ...]
    log: str | None = None
    """The preflight job's output file (kept when something failed)."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["checks"] = [asdict(c) for c in self.checks]
        return data


class _Summary(TypedDict):
    """The Diagnosis fields every outcome of `diagnose` shares."""

    site: str
    stage: str
    nodes: int
    tasks_per_node: int


# -- the job ----------------------------------------------------------------------------------------------


def sbatch_directives(site: SiteProfile, stage: str, nodes: int, time_minutes: int, output: Path) -> list[str]:
    """#SBATCH lines asking for what one job of `stage` asks for (with `nodes` nodes and a short limit): the
    stage's one rendering (`StageResources.sbatch_options`), shell-quoted as sbatch reads #SBATCH values."""
    options = {
        "job-name": "hpcxlt-doctor",
        **site.stage(stage).sbatch_options(stage, nodes=nodes, time_minutes=time_minutes),
        "output": str(output),
    }
    return [
        f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={shlex.quote(str(value))}"
        for key, value in options.items()
    ]


def preflight_script(
    site: SiteProfile, stage: str, *, nodes: int, probe: Path, timeout_s: int, paths: list[str]
) -> str:
    """The batch script: the site's setup and rendezvous exports, then one preflight task per training rank."""
    minutes = max(2, math.ceil((timeout_s + 90) / 60))  # room for the timeout to fire and be reported
    command = [sys.executable, "-m", "hpcxlt.launch.site.preflight", str(probe)]
    for path in paths:
        command += ["--path", path]
    body = [
        "#!/bin/bash",
        *sbatch_directives(site, stage, nodes, minutes, probe / "job.out"),
        "",
        "# the site's setup, as in every hpcxlt job",
        *site.setup,
        *site.network_exports(),
        f"export HPCXLT_DIST_TIMEOUT_S={timeout_s}",
        "",
        f"srun --kill-on-bad-exit=0 {' '.join(shlex.quote(c) for c in command)}",
    ]
    return "\n".join(body) + "\n"


# -- fixes -----------------------------------------------------------------------------------------------


def submit_fix(message: str, site: SiteProfile, stage: str) -> str:
    res = site.stage(stage)
    text = message.lower()
    where = f"{site.source or site.name}: stages.{stage} (or defaults)"
    if "invalid partition" in text:
        return f"partition {res.partition!r} does not exist here: `sinfo -s` lists the partitions; set partition in {where}"
    if "invalid account" in text or "invalid qos" in text or "association" in text:
        return (
            f"account/QOS not valid for you: `sacctmgr show assoc user=$USER` lists yours; set account/qos in {where}"
        )
    if "node configuration is not available" in text or "node count specification invalid" in text:
        return (
            f"no {res.nodes or 1}-node set offers {res.ntasks_per_node(stage)} tasks x {res.cpus_per_task} CPUs"
            f"{f', {res.gpus()} GPUs' if res.gpus() else ''}{f', {res.mem} memory' if res.mem else ''} per node: "
            f"`sinfo -N -o '%N %c %m %G %P'` shows what nodes have; lower them in {where}"
        )
    if "time limit" in text:
        return f"the partition's time limit is shorter than the job's: `sinfo -o '%P %l'`; lower time in {where}"
    return f"sbatch refused the job: fix what it says in {where}"


def all_reduce_fix(error: str, site: SiteProfile, node: str, master: str) -> str:
    text = error.lower()
    if "unable to find address for" in text or "no such device" in text or "interface" in text:
        return (
            f"network_interface {site.network_interface!r} does not exist on {node}: `ip -br addr` on a compute "
            "node lists its interfaces; set network_interface in the site profile (NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME)"
        )
    return (
        f"rank 0's rendezvous {master} was not reachable from {node} within the timeout: set network_interface "
        "to the interface of the nodes' fast network, master_addr_suffix where its host names differ "
        "(e.g. 'i' for gpu01i), and make sure ports 20000-31999 are open between compute nodes; on GPU sites "
        "try NCCL_DEBUG=INFO in setup"
    )


# -- running it ------------------------------------------------------------------------------------------


def _wait(job_id: str, *, wait_s: float, run_s: float, on_state: Callable[[str], None] | None) -> tuple[str, str]:
    """Poll until the job ends; ('PENDING', reason) when it did not start within wait_s."""
    started_waiting = time.monotonic()
    running_since: float | None = None
    while True:
        out = queue.run_client(["squeue", "-h", "-j", job_id, "-o", "%T|%r"], timeout=60).strip()
        if not out:
            return "ENDED", ""
        state, _, reason = out.partition("|")
        if on_state:
            on_state(state)
        now = time.monotonic()
        if state == "PENDING":
            if now - started_waiting > wait_s:
                return "PENDING", reason
        elif running_since is None:
            running_since = now
        elif now - running_since > run_s:
            return "STUCK", state
        time.sleep(1.0)


def _rank_reports(probe: Path, world: int) -> dict[int, dict[str, Any]]:
    reports = {}
    for rank in range(world):
        path = probe / f"rank-{rank}.json"
        try:
            reports[rank] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return reports


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def judge(
    site: SiteProfile,
    stage: str,
    *,
    nodes: list[str],
    tasks_per_node: int,
    reports: dict[int, dict[str, Any]],
    login: dict[str, Any],
    paths: list[str],
    job_state: str,
    log: Path,
) -> list[Check]:
    """Per-node checks from the ranks' reports (rank r runs on node r // tasks_per_node, srun's block layout)."""
    checks: list[Check] = []
    world = len(nodes) * tasks_per_node
    for index, node in enumerate(nodes):
        ranks = range(index * tasks_per_node, (index + 1) * tasks_per_node)
        found = {r: reports[r] for r in ranks if r in reports}
        missing = [r for r in ranks if r not in reports]
        if missing:
            tail = _tail(log)
            checks.append(
                Check(
                    check="srun",
                    node=node,
                    ok=False,
                    detail=f"rank(s) {missing} never started (job {job_state}){': ' + tail[-500:] if tail else ''}",
                    fix=f"the node did not run the task: `sinfo -N -n {node}` for its state, the job log {log}, "
                    f"and that {login['python']} exists there (the venv must sit on the shared file system)",
                )
            )
        else:
            checks.append(Check(check="srun", node=node, ok=True, detail=f"{len(found)} task(s) ran"))
        if not found:
            continue
        steps = [(r, rep.get("steps", {})) for r, rep in sorted(found.items())]
        reduce_steps = [(r, s.get("all_reduce")) for r, s in steps]
        failed = [(r, st) for r, st in reduce_steps if not st or not st.get("ok")]
        if failed:
            rank, step = failed[0]
            error = (step or {}).get(
                "error"
            ) or f"rank {rank} did not finish the all-reduce before the job ended ({job_state})"
            master = found[rank].get("master", "?")
            checks.append(
                Check(
                    check="all_reduce",
                    node=node,
                    ok=False,
                    detail=error[:600],
                    fix=all_reduce_fix(error, site, node, master),
                )
            )
        else:
            backend = reduce_steps[0][1]["backend"]
            slowest = max(st["total_s"] for _, st in reduce_steps)
            checks.append(
                Check(
                    check="all_reduce",
                    node=node,
                    ok=True,
                    detail=f"{backend} across {world} ranks, {slowest:.2f} s (rendezvous {found[steps[0][0]].get('master')})",
                )
            )
        shared = [s.get("shared_dir") for _, s in steps]
        if all(st and st.get("ok") for st in shared):
            checks.append(Check(check="shared_dir", node=node, ok=True, detail="wrote its files and saw every rank's"))
        else:
            unseen = sorted({m for st in shared if st for m in st.get("missing_ranks", [])})
            checks.append(
                Check(
                    check="shared_dir",
                    node=node,
                    ok=False,
                    detail=f"does not see the files of rank(s) {unseen}" if unseen else "did not get to check",
                    fix="the run folder is not shared between the nodes: put runs on a file system every "
                    "node mounts at the same path (e.g. $WORK or /scratch), not /tmp or a local disk",
                )
            )
        envs = [s.get("environment") or {} for _, s in steps]
        differing = sorted(
            {
                f"{name} {env.get('packages', {}).get(name)} (login: {version})"
                for env in envs
                for name, version in login["packages"].items()
                if env.get("packages", {}).get(name) != version
            }
        )
        py = {env.get("python_version") for env in envs}
        if differing or py != {login["python_version"]}:
            checks.append(
                Check(
                    check="versions",
                    node=node,
                    ok=False,
                    detail="; ".join(
                        [
                            *(
                                f"python {v} (login: {login['python_version']})"
                                for v in py
                                if v != login["python_version"]
                            ),
                            *differing,
                        ]
                    )[:600],
                    fix="the job runs another environment than the login node: activate the same venv "
                    "(on the shared file system) in the site's setup lines",
                )
            )
        else:
            checks.append(
                Check(
                    check="versions",
                    node=node,
                    ok=True,
                    detail=f"python {login['python_version']}, "
                    f"torch {login['packages'].get('torch')}, same packages as the login node",
                )
            )
        if not paths:
            checks.append(
                Check(
                    check="paths",
                    node=node,
                    ok=None,
                    detail="not checked: pass --config CONFIG to check its model and data folders"
                    + (" (the site is offline)" if site.offline else ""),
                )
            )
            continue
        bad = {p: why for _, s in steps for p, why in ((s.get("paths") or {}).get("unreadable") or {}).items()}
        if bad:
            checks.append(
                Check(
                    check="paths",
                    node=node,
                    ok=False,
                    detail="; ".join(f"{p}: {why}" for p, why in bad.items())[:600],
                    fix="prepare data and model on a login node into a folder every node mounts "
                    "(`hpcxlt prepare CONFIG --out DIR`) and point the config there",
                )
            )
        else:
            checks.append(Check(check="paths", node=node, ok=True, detail=f"{len(paths)} path(s) readable"))
    return checks


def diagnose(
    site: SiteProfile,
    *,
    stage: str = "intermediate",
    nodes: int | None = None,
    base_dir: Path,
    paths: Sequence[str] = (),
    timeout_s: int | None = None,
    wait_s: float = 600,
    on_state: Callable[[str], None] | None = None,
) -> Diagnosis:
    """Submit the preflight job, wait for it and judge what every rank found."""
    if stage not in TRAIN_STAGES:
        raise ValueError(f"stage {stage!r}: doctor checks a training stage, one of {', '.join(TRAIN_STAGES)}")
    res = site.stage(stage)
    nodes = nodes or res.nodes
    tasks = res.ntasks_per_node(stage)
    timeout_s = timeout_s or min(site.dist_timeout_s, 120)
    started = time.monotonic()
    base = Path(base_dir).absolute()
    summary = _Summary(site=site.source or site.name, stage=stage, nodes=nodes, tasks_per_node=tasks)
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = base / f"{PROBE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        probe.mkdir()
    except OSError as err:
        return Diagnosis(
            **summary,
            job_id=None,
            checks=(
                Check(
                    check="shared_dir",
                    node="-",
                    ok=False,
                    detail=f"{base}: {err.strerror}",
                    fix="choose a run folder you can write (--dir), on a file system every node mounts",
                ),
            ),
        )
    script = probe / "preflight.sbatch"
    write_text_atomic(
        script, preflight_script(site, stage, nodes=nodes, probe=probe, timeout_s=timeout_s, paths=list(paths))
    )
    try:
        job_id = queue.run_client(["sbatch", "--parsable", str(script)]).strip().split(";")[0]
    except queue.QueueError as err:
        message = str(err)
        shutil.rmtree(probe, ignore_errors=True)
        return Diagnosis(
            **summary,
            job_id=None,
            checks=(
                Check(
                    check="submit",
                    node="-",
                    ok=False,
                    detail=message.split(": ", 1)[-1][:600],
                    fix=submit_fix(message, site, stage),
                ),
            ),
        )
    checks = [Check(check="submit", node="-", ok=True, detail=f"job {job_id}")]
    outcome, reason = _wait(job_id, wait_s=wait_s, run_s=timeout_s * 2 + 120, on_state=on_state)
    log = probe / "job.out"
    if outcome in ("PENDING", "STUCK"):
        queue.cancel([job_id])
        checks.append(
            Check(
                check="start",
                node="-",
                ok=False,
                detail=f"still {'pending' if outcome == 'PENDING' else 'running'} after "
                f"{wait_s if outcome == 'PENDING' else timeout_s * 2 + 120:.0f} s ({reason}); cancelled",
                fix="the queue is busy or the request too large: try again with --wait, fewer --nodes, "
                "or a partition with free nodes (`sinfo -s`)",
            )
        )
        return Diagnosis(
            **summary,
            job_id=job_id,
            checks=tuple(checks),
            log=str(log),
            timings={"total_s": round(time.monotonic() - started, 1)},
        )
    info = _accounting(job_id)
    node_names = (
        expand_hostlist(info.get("NodeList", "")) if info.get("NodeList") not in (None, "", "None assigned") else []
    )
    if len(node_names) != nodes:
        node_names = [f"node{i}" for i in range(nodes)] if not node_names else node_names
    reports = _rank_reports(probe, nodes * tasks)
    checks += judge(
        site,
        stage,
        nodes=node_names,
        tasks_per_node=tasks,
        reports=reports,
        login=environment(),
        paths=list(paths),
        job_state=info.get("State", "?"),
        log=log,
    )
    diagnosis = Diagnosis(
        **summary,
        job_id=job_id,
        checks=tuple(checks),
        log=str(log),
        timings={"total_s": round(time.monotonic() - started, 1)},
    )
    if diagnosis.ok:  # nothing to look at: no probe folder left behind
        shutil.rmtree(probe, ignore_errors=True)
        diagnosis = dataclasses.replace(diagnosis, log=None)
    return diagnosis


def _accounting(job_id: str) -> dict[str, str]:
    """sacct's row for the job; accounting may lag the end of the job by a moment."""
    for _ in range(20):
        row = queue.accounting([job_id]).get(job_id)
        if row and row.get("State") in END_STATES:
            return row
        time.sleep(0.5)
    return queue.accounting([job_id]).get(job_id, {})
