"""Jobs queued before a module moved still run: submitit pickles the callables of `hpcxlt.launch.node`
by import path, and a job that waits in the queue (or is requeued) loads its pickle with whatever code
is installed when it starts.

`tests/fixtures/old_node_tasks.pkl` was written by the code of commit 56a71d5 (before `launch/` was
grouped into subpackages), as `hpcxlt.launch.shared_array.submit` writes an array's shared pickle:

    from submitit.core.utils import DelayedSubmission, cloudpickle_dump
    from hpcxlt.launch.node import AggregateTask, FeederTask, SlurmTask
    tasks = [SlurmTask("/runs/old", "target.mnli.xnli.s1", 3),
             AggregateTask("/runs/old", ["srun", "--ntasks", "2"]), FeederTask("/runs/old")]
    delayed = [DelayedSubmission(task) for task in tasks]
    for item in delayed:
        item.set_timeout(60, 3)
    cloudpickle_dump(delayed, "tests/fixtures/old_node_tasks.pkl")

Never regenerate it: its point is that it holds the old import path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from submitit.core.utils import DelayedSubmission, pickle_load

from hpcxlt.launch.execute import slurm_tasks
from hpcxlt.launch.record import aggregate_state
from hpcxlt.store import RunStore

FIXTURE = Path(__file__).parent / "fixtures" / "old_node_tasks.pkl"


def _load() -> list[DelayedSubmission]:
    assert b"hpcxlt.launch.node" in FIXTURE.read_bytes()  # the old path, as queued jobs hold it
    return pickle_load(FIXTURE)


def _environment(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(
        job_id="4242_0",
        global_rank=0,
        hostname="node1",
        paths=SimpleNamespace(stdout=tmp_path / "4242_0_0_log.out"),
    )


def test_old_pickles_load_as_todays_tasks():
    slurm_task, aggregate_task, feeder = (item.function for item in _load())
    assert isinstance(slurm_task, slurm_tasks.SlurmTask)
    assert (slurm_task.run_dir, slurm_task.job_key, slurm_task.max_requeues) == ("/runs/old", "target.mnli.xnli.s1", 3)
    assert isinstance(aggregate_task, slurm_tasks.AggregateTask)
    assert aggregate_task.launcher == ["srun", "--ntasks", "2"]
    assert isinstance(feeder, slurm_tasks.FeederTask)


def test_an_old_feeder_runs_the_next_wave(monkeypatch):
    feeder = _load()[2]
    calls = []
    monkeypatch.setattr(
        slurm_tasks.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    assert feeder.result() == 0  # what submitit's runner calls on the node
    assert calls == [[sys.executable, "-m", "hpcxlt", "resume", "/runs/old", "--next-wave"]]


def test_an_old_aggregation_runs_and_records_its_state(tmp_path, monkeypatch):
    delayed = _load()[1]
    delayed.function.run_dir = str(tmp_path)  # the pickle names a run directory that is not here
    monkeypatch.setattr(slurm_tasks.submitit, "JobEnvironment", lambda: _environment(tmp_path))
    calls = []
    monkeypatch.setattr(
        slurm_tasks.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    assert delayed.result() == 0
    assert calls[0][-4:] == ["-m", "hpcxlt", "aggregate", str(tmp_path)] and calls[0][:3] == ["srun", "--ntasks", "2"]
    assert aggregate_state(RunStore(tmp_path))["state"] == "done"


def test_an_old_training_task_counts_its_requeue(tmp_path, monkeypatch):
    task = _load()[0].function
    monkeypatch.setattr(slurm_tasks.submitit, "JobEnvironment", lambda: _environment(tmp_path))
    noted = []
    monkeypatch.setattr(
        slurm_tasks, "note_requeue", lambda run_dir, key, **kw: noted.append((run_dir, key, kw)) or True
    )
    again = task.checkpoint()  # what submitit's SIGUSR2 handler calls
    assert isinstance(again, DelayedSubmission) and again.function is task
    assert noted[0][:2] == ("/runs/old", "target.mnli.xnli.s1") and noted[0][2]["max_requeues"] == 3
