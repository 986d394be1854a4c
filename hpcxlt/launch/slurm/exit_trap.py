"""Self-healing: a Slurm job whose process was killed (the OOM killer's SIGKILL, a segfault) requeues itself.

Every sbatch script hpcxlt submits sets an EXIT trap (`trap_lines`) that runs, after the job's srun has
ended, `python -m hpcxlt.launch.heal RUN_DIR STATUS`. When the job's cells are not done, their process
died without recording an error (state still 'running') and srun's status says a signal ended it
(128 + N), the job is requeued (`scontrol requeue`, as submitit does on SIGUSR2) and may start again
after a backoff (`StartTime`: the site's `retry_backoff_s`, doubling per retry), up to the site's
`max_retries`; past that its cells are marked failed with the reason. Training resumes from its newest complete checkpoint, so no finished work is redone.

What else comes back without `hpcxlt resume`: a job on a node that fails or is set DOWN is requeued by
Slurm itself (jobs are submitted with --requeue); a preemption or time limit requeues through
submitit's SIGUSR2 path (`hpcxlt.launch.execute.slurm_tasks`), also on partitions with PreemptMode=CANCEL when Slurm
sends the job's signal at preemption (preempt_send_user_signal): the job's own requeue inside GraceTime
turns the cancellation into a requeue. A job cancelled by scancel is not requeued; `hpcxlt resume`
resubmits it.

No process stays on a login node: the trap runs inside the job's own allocation.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from hpcxlt.store import RunStore

MAX_BACKOFF_S = 3600


def trap_lines(run_dir: str, max_retries: int, backoff_s: int) -> list[str]:
    """The bash lines of the sbatch script that heal the job when it ends (output goes to the job's log).

    A function holds the command, its paths shell-quoted once, and the trap only calls it: a trap's
    text is parsed again when it fires, so a path written into the trap itself would need two levels of
    quoting (a run directory named `x$(touch y)` or `it's` stays one literal argument here)."""
    command = shlex.join([sys.executable, "-m", "hpcxlt.launch.heal", str(run_dir)])
    return [
        f'hpcxlt_heal() {{ {command} "$1" {int(max_retries)} {int(backoff_s)} || true; }}',
        "trap 'hpcxlt_heal $?' EXIT",
    ]


def job_id(environ=os.environ) -> str:
    """This job's id as hpcxlt records it: '123_4' for an array task, '123' otherwise."""
    if environ.get("SLURM_ARRAY_TASK_ID") and environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID", "")


def heal(run_dir: str, status: int, max_retries: int, backoff_s: int, *, environ=os.environ) -> str | None:
    """Decide and act for the ending job; returns what was done for the job's log (None: said already)."""
    store = RunStore(run_dir)
    jid = job_id(environ)
    if not jid or not store.plan_path.exists():
        return "nothing to heal (not a job of this run)"
    cells = [
        c.key for c in store.load_plan().cells if not store.is_done(c.key) and store.state(c.key).get("job_id") == jid
    ]
    if not cells:
        return f"job {jid}: no unfinished cell"
    states = [store.state(key) for key in cells]
    if status <= 128 or any(s.get("state") != "running" for s in states):
        return f"job {jid}: ended with status {status}, cells {[s.get('state') for s in states]}: not a killed process"
    retries = max(int(s.get("retries", 0)) for s in states)
    signal_name = f"signal {status - 128}"
    if retries >= max_retries:
        for key in cells:
            store.set_state(
                key,
                "failed",
                error=f"the job's process was killed ({signal_name}) {retries + 1} times; "
                f"max_retries={max_retries} in the site profile (out of memory? raise mem, then "
                "`hpcxlt resume`)",
                failed=time.time(),
            )
        return f"job {jid}: killed again, max_retries reached: cells marked failed"
    delay = min(backoff_s * 2**retries, MAX_BACKOFF_S)
    for key in cells:
        store.set_state(
            key,
            "submitted",
            retries=retries + 1,
            reason=f"process killed ({signal_name}); retry {retries + 1} of {max_retries} in {delay} s",
            requeued=time.time(),
        )
    message = (
        f"job {jid}: process killed ({signal_name}); requeued, retry {retries + 1} of {max_retries} after {delay} s"
    )
    print(f"hpcxlt heal: {message}", flush=True)  # said first: the requeue ends this batch script
    slurm_id = environ.get("SLURM_JOB_ID", jid)
    subprocess.run(["scontrol", "requeue", slurm_id], check=True, capture_output=True, text=True)
    # the requeued job may not start before the backoff has passed (best effort: it may be pending already)
    subprocess.run(["scontrol", "update", f"JobId={slurm_id}", f"StartTime=now+{delay}"], capture_output=True)
    return None


def main(argv: list[str] | None = None) -> int:
    run_dir, status, max_retries, backoff_s = (argv or sys.argv[1:])[:4]
    said = heal(run_dir, int(status), int(max_retries), int(backoff_s))
    if said:
        print(f"hpcxlt heal: {said}", flush=True)
    return 0
