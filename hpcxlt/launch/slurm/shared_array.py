"""Job arrays whose tasks share one pickle: O(arrays) files at submission instead of O(jobs).

submitit's `submit_array` writes one pickle per array task before sbatch and renames each into place
after it: for a 1,400-job grid that is 2,800 file operations on the login node's (often shared) file
system, more time than the sbatch calls themselves. Here an array's tasks go into one pickle, and the
batch script starts `python -m hpcxlt.launch.shared_array FOLDER PICKLE`: on the node, each task
writes its own pickle (`JobPaths.submitted_pickle`, where submitit's runner looks) from the shared one
and hands over to submitit's own runner, which handles signals, checkpoint and requeue as for any
submitit job. A requeued task finds its own pickle (re-dumped by submitit at the requeue, with its
time-out countdown) and keeps it.

A refused sbatch call leaves nothing behind: submitit's own submission keeps the pickle and batch script
of a call that failed, and a submission retried through a controller outage would pile them up.
"""

from __future__ import annotations

import os
import shlex
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.submission import process_job
from submitit.core.utils import DelayedSubmission, JobPaths, cloudpickle_dump, pickle_load

ARRAYS_DIR = "arrays"
"""Sub-folder of the submitit folder that holds the shared pickles."""


def pickle_path(folder: Path, name: str) -> Path:
    """A fresh path for an array's shared pickle (never reused: queued tasks of earlier arrays read theirs)."""
    return Path(folder) / ARRAYS_DIR / f"{name}.{uuid.uuid4().hex[:12]}.pkl"


def command(folder: Path, shared: Path | str | None = None) -> str:
    """The command in the batch script: submitit's own runner for a single job (what
    SlurmExecutor._submitit_command_str says), this module for an array whose tasks share `shared`."""
    if shared is None:
        return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return " ".join(
        [
            shlex.quote(sys.executable),
            "-u -m hpcxlt.launch.shared_array",
            shlex.quote(str(folder)),
            shlex.quote(str(shared)),
        ]
    )


class Executor(submitit.SlurmExecutor):
    """submitit's SlurmExecutor that remembers the batch script of its last sbatch call (to remove it
    when sbatch refuses the call)."""

    script: Path | None = None

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        self.script = submission_file_path
        return super()._make_submission_command(submission_file_path)


def submit(executor: Executor, tasks: Sequence[Any], name: str) -> list[str]:
    """Submit `tasks`, one job or one array (`name`) whose tasks share one pickle; return the job ids
    (`<array>_<index>` for an array). If sbatch refuses, its pickle and batch script are removed."""

    delayed = []
    for task in tasks:
        item = DelayedSubmission(task)
        item.set_timeout(executor.parameters.get("time", 5), executor.max_num_timeout)  # as submitit does
        delayed.append(item)
    single = len(delayed) == 1
    if single:  # where submitit puts a single job's pickle until its id is known
        pickle = JobPaths.get_first_id_independent_folder(executor.folder) / f"{uuid.uuid4().hex}.pkl"
        line = command(executor.folder)
    else:
        pickle = pickle_path(executor.folder, name)
        line = command(executor.folder, pickle)
        executor.parameters["map_count"] = len(delayed)
    pickle.parent.mkdir(parents=True, exist_ok=True)
    cloudpickle_dump(delayed[0] if single else delayed, pickle)
    executor.script = None
    try:
        job = executor._submit_command(line)  # submitit's sbatch call
    except BaseException:
        for path in (pickle, executor.script):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    if single:
        job.paths.move_temporary_file(pickle, "submitted_pickle")
        return [job.job_id]
    return [f"{job.job_id}_{index}" for index in range(len(delayed))]


def start(folder: str, shared: str, env: dict[str, str] | None = None) -> None:
    """On the node: make sure this task's own pickle exists, then run it with submitit's runner."""

    env = dict(os.environ) if env is None else env
    index = int(env["SLURM_ARRAY_TASK_ID"])
    paths = JobPaths(folder, job_id=f"{env['SLURM_ARRAY_JOB_ID']}_{index}")
    if not paths.submitted_pickle.exists():
        delayed: DelayedSubmission = pickle_load(shared)[index]
        # every rank of a multi-task job gets here: each writes its own temporary file, then renames
        tmp = paths.submitted_pickle.with_name(f".{paths.submitted_pickle.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        paths.submitted_pickle.parent.mkdir(parents=True, exist_ok=True)
        delayed.dump(tmp)
        os.replace(tmp, paths.submitted_pickle)
    process_job(folder)
