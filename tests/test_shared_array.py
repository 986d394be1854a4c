"""An array task started from the shared pickle runs its own element through submitit's runner, and a
requeued task keeps the pickle submitit re-dumped for it. Real processes with the environment Slurm
gives an array task and submitit's batch script sets (the cluster tests run the same entry point under Slurm)."""

import os
import pickle
import subprocess
import sys

from submitit.core.utils import DelayedSubmission, JobPaths, cloudpickle_dump

from tests.paths import ROOT


def _start(folder, shared, task: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(
        PYTHONPATH=str(ROOT),
        SUBMITIT_EXECUTOR="slurm",
        SLURM_JOB_ID=str(700 + task),
        SLURM_ARRAY_JOB_ID="42",
        SLURM_ARRAY_TASK_ID=str(task),
        SLURM_PROCID="0",
        SLURM_NTASKS="1",
        SLURM_LOCALID="0",
        SLURM_NODEID="0",
        SLURM_JOB_NUM_NODES="1",
        SLURM_JOB_NODELIST="vm",
        SLURMD_NODENAME="vm",
    )
    return subprocess.run(
        [sys.executable, "-m", "hpcxlt.launch.shared_array", str(folder), str(shared)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _result(folder, task: int):
    with open(JobPaths(folder, job_id=f"42_{task}", task_id=0).result_pickle, "rb") as handle:
        return pickle.load(handle)


def test_each_task_runs_its_own_element_and_a_requeued_task_keeps_its_pickle(tmp_path):
    folder = tmp_path / "slurm"
    shared = folder / "arrays" / "eval.0.abc.pkl"
    shared.parent.mkdir(parents=True)
    cloudpickle_dump([DelayedSubmission(str.upper, "first"), DelayedSubmission(str.upper, "second")], shared)
    done = _start(folder, shared, 1)
    assert done.returncode == 0, done.stderr
    assert _result(folder, 1) == ("success", "SECOND")
    assert JobPaths(folder, job_id="42_1").submitted_pickle.is_file()  # its own pickle, written on the node
    assert not JobPaths(folder, job_id="42_0").submitted_pickle.exists()  # nothing for a task not started
    # a task that was requeued: submitit re-dumped its pickle (with its checkpoint); that one runs
    DelayedSubmission(str.upper, "checkpointed").dump(JobPaths(folder, job_id="42_0").submitted_pickle)
    again = _start(folder, shared, 0)
    assert again.returncode == 0, again.stderr
    assert _result(folder, 0) == ("success", "CHECKPOINTED")


def test_the_requeue_cap_has_one_owner(tmp_path):
    """submitit's time-out countdown never decides: every executor hpcxlt submits with leaves it out of reach
    of any site's max_requeues, and a task that timed out many times is still requeued by submitit's rule
    (countdown - timed_out >= 0), so only worker.note_requeue (which forgives progress) caps requeues."""
    import inspect

    from submitit.core.utils import DelayedSubmission

    from hpcxlt.launch.slurm import submission as slurm

    executor = slurm.executor_for(tmp_path)
    item = DelayedSubmission(print)
    item.set_timeout(60, executor.max_num_timeout)
    for _ in range(100):  # 100 time-outs in a row, as submitit's checkpoint_and_try_requeue counts them
        item._timeout_countdown -= 1
    assert item._timeout_countdown >= 0
    source = inspect.getsource(slurm)
    assert "max_num_timeout=site" not in source and source.count("max_num_timeout=NO_SUBMITIT_CAP") == 2
