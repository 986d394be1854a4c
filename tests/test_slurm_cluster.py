"""The local Slurm cluster from slurm/up.sh runs jobs, arrays, accounting and real preemption."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401  (fixture used by name)

pytestmark = pytest.mark.slurm


def _run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def _submit(args: list[str], env: dict[str, str]) -> str:
    """sbatch --parsable; returns the job id."""
    return _run(["sbatch", "--parsable", *args], env).strip().split(";")[0]


def _poll(what: str, check, timeout: float, interval: float = 0.3):
    """Call check() until it returns something truthy; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _squeue_state(job_id: str, env: dict[str, str]) -> str:
    """Current state of a queued/running job, '' once it has left the queue."""
    return _run(["squeue", "-h", "-j", job_id, "-o", "%T"], env).strip()


def _sacct_states(job_id: str, env: dict[str, str], duplicates: bool = False) -> dict[str, list[str]]:
    """JobID -> states recorded by accounting (every requeued run too with duplicates=True)."""
    cmd = ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"] + (["-D"] if duplicates else [])
    states: dict[str, list[str]] = {}
    for line in _run(cmd, env).splitlines():
        jid, state = line.split("|")
        states.setdefault(jid, []).append(state.split()[0])  # "CANCELLED by 0" -> CANCELLED
    return states


def test_sbatch_wait_runs_a_job_that_writes_a_file(slurm_cluster, tmp_path):
    out = tmp_path / "hello.txt"
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            "-o",
            str(tmp_path / "job.log"),
            "--chdir",
            str(tmp_path),
            "--wrap",
            f"echo hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION > {out}",
        ],
        env=slurm_cluster,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[-1]
    assert out.read_text() == f"hello from {job_id} on low\n"  # `low` is the default partition
    states = _poll(
        f"sacct COMPLETED for job {job_id}",
        lambda: (s := _sacct_states(job_id, slurm_cluster)).get(job_id) == ["COMPLETED"] and s,
        20,
    )
    assert states == {job_id: ["COMPLETED"]}


def test_three_task_array_completes_and_sacct_reports_each_task(slurm_cluster, tmp_path):
    job_id = _submit(
        [
            "--array=0-2",
            "-o",
            str(tmp_path / "%A_%a.log"),
            "--chdir",
            str(tmp_path),
            "--wrap",
            "echo $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT > task-$SLURM_ARRAY_TASK_ID.txt",
        ],
        slurm_cluster,
    )
    _poll(f"array {job_id} to leave the queue", lambda: not _squeue_state(job_id, slurm_cluster), 40)
    for task in range(3):
        assert (tmp_path / f"task-{task}.txt").read_text() == f"{task} of 3\n"
    expected = {f"{job_id}_{task}": ["COMPLETED"] for task in range(3)}
    _poll(f"sacct COMPLETED for the 3 tasks of {job_id}", lambda: _sacct_states(job_id, slurm_cluster) == expected, 20)


# The low job records each start, the USR2 that preemption sends, and requeues itself on USR2
# the way submitit does (`scontrol requeue`); its second run (SLURM_RESTART_COUNT=1) completes.
LOW_JOB = """#!/bin/bash
log={log}
run=${{SLURM_RESTART_COUNT:-0}}
echo "start $run $(date +%s.%N)" >> $log
if [ "$run" -ge 1 ]; then echo "done $(date +%s.%N)" >> $log; exit 0; fi
trap 'echo "usr2 $(date +%s.%N)" >> $log; scontrol requeue $SLURM_JOB_ID' USR2
trap 'echo "term $(date +%s.%N)" >> $log; exit 143' TERM
for i in $(seq 1200); do sleep 0.1; done
echo "never preempted $(date +%s.%N)" >> $log
"""


def test_high_partition_job_preempts_low_job_which_gets_usr2_requeues_and_completes(slurm_cluster, tmp_path):
    env = slurm_cluster
    log = tmp_path / "events.log"
    script = tmp_path / "low.sh"
    script.write_text(LOW_JOB.format(log=log))
    cpus = int(_run(["sinfo", "-h", "-N", "-p", "high", "-o", "%c"], env).split()[0])

    # B:USR2@60 with a 10-minute limit: the signal can only come from preemption here.
    low = _submit(
        [
            "-p",
            "low",
            "-c",
            "1",
            "--requeue",
            "--signal=B:USR2@60",
            "-t",
            "10",
            "--open-mode=append",
            "-o",
            str(tmp_path / "low.out"),
            "--chdir",
            str(tmp_path),
            str(script),
        ],
        env,
    )
    _poll(f"low job {low} to start", lambda: log.exists() and "start 0" in log.read_text(), 30)

    # Needs every CPU of the node, so it can only run by preempting the low job.
    high = _submit(
        [
            "-p",
            "high",
            "-c",
            str(cpus),
            "-t",
            "5",
            "-o",
            str(tmp_path / "high.out"),
            "--chdir",
            str(tmp_path),
            "--wrap",
            f'echo "high $(date +%s.%N)" >> {log}; sleep 1',
        ],
        env,
    )
    _poll(
        f"high job {high} and requeued low job {low} to finish",
        lambda: not _squeue_state(high, env) and not _squeue_state(low, env),
        50,
    )

    events = [
        line.split()[0] + (line.split()[1] if line.startswith("start") else "") for line in log.read_text().splitlines()
    ]
    assert "never" not in events, f"low job ran to its end without being preempted: {events}"
    assert events[:2] == ["start0", "usr2"], f"low job did not get USR2 at preemption: {events}"
    assert events.index("high") < events.index("start1"), f"low job restarted before the high job ran: {events}"
    assert events[-2:] == ["start1", "done"], f"requeued low job did not finish its second run: {events}"

    assert _sacct_states(high, env) == {high: ["COMPLETED"]}
    _poll(
        f"sacct to show low job {low} requeued then COMPLETED",
        lambda: _sacct_states(low, env, duplicates=True) == {low: ["REQUEUED", "COMPLETED"]},
        20,
    )


def _skip_unless_ci(reason: str) -> None:
    """Skip outside CI; under CI (which starts the cluster with slurm/up.sh as root) the test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run this test", pytrace=False)
    pytest.skip(reason)


def test_up_again_keeps_the_running_cluster(slurm_cluster):
    if os.geteuid() != 0:
        _skip_unless_ci("slurm/up.sh runs as root")
    conf = Path(slurm_cluster["SLURM_CONF"])
    state = conf.parent.parent  # slurm/up.sh writes STATE_DIR/etc/slurm.conf
    pidfiles = [state / "run" / f"{d}.pid" for d in ("slurmctld", "slurmdbd")]
    pidfiles += sorted((state / "run").glob("slurmd-*.pid"))  # one slurmd per node
    pidfiles += [state / "mysql" / "mariadbd.pid", state / "munge" / "munged.pid"]
    if not all(p.is_file() for p in pidfiles):
        _skip_unless_ci(f"cluster at {conf} was not started by slurm/up.sh")
    before = {p.name: p.read_text() for p in pidfiles}
    proc = subprocess.run(
        [str(ROOT / "slurm" / "up.sh"), str(state)], env=slurm_cluster, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"export SLURM_CONF={conf}\n"
    assert {p.name: p.read_text() for p in pidfiles} == before, "up.sh restarted daemons of a running cluster"
