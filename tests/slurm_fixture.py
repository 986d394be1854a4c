"""Session fixture `slurm_cluster` for tests that need the local Slurm cluster (`make slurm-up`).

A plain module, not a conftest: a conftest or test module imports the fixture from here.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

USABLE = {"idle", "mixed", "allocated", "completing"}
"""Node states (sinfo %T) in which a node runs jobs; 'idle*' (not responding), down, drained are not."""
# Same default as slurm/common.sh.
DEFAULT_STATE_DIR = "/tmp/hpcxlt-slurm"


def state_dir(environ: dict[str, str] | None = None) -> Path:
    """The folder slurm/up.sh uses: $HPCXLT_SLURM_DIR or /tmp/hpcxlt-slurm."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("HPCXLT_SLURM_DIR") or DEFAULT_STATE_DIR)


def find_slurm_conf(environ: dict[str, str] | None = None) -> str | None:
    """SLURM_CONF from the environment, else from the `export SLURM_CONF=...` line of STATE_DIR/env.sh."""
    environ = os.environ if environ is None else environ
    if environ.get("SLURM_CONF"):
        return environ["SLURM_CONF"]
    env_sh = state_dir(environ) / "env.sh"
    if not env_sh.is_file():
        return None
    for line in env_sh.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and words[1].startswith("SLURM_CONF="):
            return words[1].split("=", 1)[1]
    return None


def cluster_problem(env: dict[str, str]) -> str | None:
    """Why the cluster named by env['SLURM_CONF'] cannot run jobs, or None when it can."""
    for tool in ("sbatch", "sinfo", "sacct"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    conf = env.get("SLURM_CONF")
    if not conf or not Path(conf).is_file():
        return f"no slurm.conf found (SLURM_CONF={conf!r}, state dir {state_dir(env)})"
    checks = {
        # %T without '*': a node that is not responding shows e.g. 'idle*'.
        "sinfo": ["sinfo", "-h", "-N", "-o", "%T"],
        "sacct": ["sacct", "-n", "-X", "-a"],
    }
    for name, cmd in checks.items():
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` timed out (SLURM_CONF={conf})"
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed (SLURM_CONF={conf}): {proc.stderr.strip()[:300]}"
        if name == "sinfo":
            states = set(proc.stdout.split())
            if not states & {"idle", "mixed", "allocated", "completing"}:
                return f"no usable node (sinfo states: {sorted(states) or 'none'}; SLURM_CONF={conf})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """Environment (os.environ plus SLURM_CONF) for running Slurm clients against the local cluster.

    Fails under CI (env var CI set), where the cluster must have been started; skips elsewhere.
    """
    # without torch's rendezvous variables that in-process training tests leave in os.environ: srun
    # and sbatch export them, and every task would then read itself as a torchrun world of its own
    from hpcxlt.launch.slurm.submission import RENDEZVOUS_VARS

    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARS}
    conf = find_slurm_conf(env)
    if conf:
        env["SLURM_CONF"] = conf
    problem = cluster_problem(env)
    if problem is not None and "no usable node" in problem:  # e.g. re-registering after a restart
        import time

        try:
            wait_for_usable_node(env, time.time() + 60)
            problem = cluster_problem(env)
        except RuntimeError:
            pass
    if problem is not None:
        message = (
            f"local Slurm cluster unreachable: {problem}. Start it with `make slurm-up` (as root); "
            f"tests read SLURM_CONF from the environment or from {state_dir(env) / 'env.sh'}"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return env


def stop_controller() -> None:
    """Stop the local cluster's slurmctld (as a restart or fail-over would); jobs keep running."""
    import signal
    import time

    pid_file = state_dir() / "run" / "slurmctld.pid"
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 30
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.2)


def start_controller(env: dict[str, str]) -> None:
    """Start slurmctld again (it recovers its jobs from its state folder) and wait until it answers."""
    import time

    subprocess.run(
        ["slurmctld", "-f", env["SLURM_CONF"]], env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True
    )
    deadline = time.time() + 90
    while subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True).returncode != 0:
        if time.time() > deadline:
            raise RuntimeError("slurmctld did not come back within 90 s")
        time.sleep(0.5)
    wait_for_usable_node(env, deadline)


def wait_for_usable_node(env: dict[str, str], deadline: float) -> None:
    """Until every node can run jobs: after a controller restart a node shows 'unknown' until its slurmd
    registers again."""
    import time

    while True:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
        states = set(out.stdout.split())
        if states and states <= USABLE:
            return
        if time.time() > deadline:
            raise RuntimeError(f"no usable node after the controller restart (sinfo: {out.stdout.split()})")
        time.sleep(1)


@pytest.fixture(scope="module")
def two_nodes(slurm_cluster) -> list[str]:
    """The `multi` partition's two usable nodes, n1 and n2 of `slurm/up.sh --nodes 2` (CI starts them with
    `make slurm-up`; elsewhere the test is skipped with how to start them)."""
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-p", "multi", "-o", "%N %T"], env=slurm_cluster, capture_output=True, text=True
    )
    usable = [line.split()[0] for line in out.stdout.splitlines() if line.split()[1] in USABLE]
    if len(usable) < 2:
        problem = (
            "the local cluster has no two usable nodes in partition multi "
            f"(sinfo: {out.stdout.strip() or out.stderr.strip() or 'nothing'})"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must start them with `make slurm-up` (NODES=2)", pytrace=False)
        pytest.skip(f"{problem}: run `make slurm-up` (slurm/up.sh --nodes 2)")
    return usable


def task_pids(job_id: str) -> list[int]:
    """The job's training processes (srun tasks running submitit's entry point, or for an array task
    hpcxlt's shared-pickle start that hands over to it) on every node: one PID namespace for the whole
    machine, so the host sees the tasks inside the nodes' network namespaces."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        # srun itself carries the command in its arguments but no step id; the tasks run in step 0
        if "_" in job_id:  # an array task, as submitit names it: <array job>_<task>
            array, task = job_id.split("_", 1)
            ours = (
                f"SLURM_ARRAY_JOB_ID={array}".encode() in environ and f"SLURM_ARRAY_TASK_ID={task}".encode() in environ
            )
        else:
            ours = f"SLURM_JOB_ID={job_id}".encode() in environ
        if (
            ours
            and any(v.startswith(b"SLURM_STEP_ID=") for v in environ)
            and (b"submitit.core._submit" in cmdline or b"hpcxlt.launch.shared_array" in cmdline)
        ):
            pids.append(int(entry))
    return pids


@contextlib.contextmanager
def frozen(job_id: str, tasks: int):
    """The job's `tasks` training tasks stopped (SIGSTOP) inside the block, continued after it (if alive):
    a test can hold a job at a point of its choosing, whatever the machine's speed."""
    import signal

    pids = task_pids(job_id)
    assert len(pids) == tasks, f"expected {tasks} training task(s) of job {job_id}, found {pids}"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
