"""Job arrays whose tasks share one pickle: O(arrays) files at submission instead of O(jobs).

submitit's `submit_array` writes one pickle per array task before sbatch and renames each into place
after it: for a 1,400-job grid that is 2,800 file operations on the login node's (often shared) file
system, more time than the sbatch calls themselves. Here an array's tasks go into one pickle, and the
batch script starts `python -m hpcxlt.launch.shared_array FOLDER PICKLE`: on the node, each task
writes its own pickle (`JobPaths.submitted_pickle`, where submitit's runner looks) from the shared one
and hands over to submitit's own runner, which handles signals, checkpoint and requeue as for any
submitit job. A requeued task finds its own pickle (re-dumped by submitit at the requeue, with its
time-out countdown) and keeps it.
"""

from __future__ import annotations

import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

ARRAYS_DIR = "arrays"
"""Sub-folder of the submitit folder that holds the shared pickles."""


def pickle_path(folder: Path, name: str) -> Path:
    """A fresh path for an array's shared pickle (never reused: queued tasks of earlier arrays read theirs)."""
    return Path(folder) / ARRAYS_DIR / f"{name}.{uuid.uuid4().hex[:12]}.pkl"


def command(folder: Path, shared: Path | str) -> str:
    """What each array task runs."""
    return " ".join([shlex.quote(sys.executable), "-u -m hpcxlt.launch.shared_array", shlex.quote(str(folder)),
                     shlex.quote(str(shared))])


def submit(executor: Any, tasks: Sequence[Any], shared: Path) -> list[str]:
    """Submit `tasks` as one array with the submitit SlurmExecutor `executor`; return the task ids."""
    from submitit.core.utils import DelayedSubmission, cloudpickle_dump

    delayed = []
    for task in tasks:
        item = DelayedSubmission(task)
        item.set_timeout(executor.parameters.get("time", 5), executor.max_num_timeout)  # as submit_array does
        delayed.append(item)
    shared.parent.mkdir(parents=True, exist_ok=True)
    cloudpickle_dump(delayed, shared)
    executor.parameters["map_count"] = len(delayed)
    first = executor._submit_command(command(executor.folder, shared))  # the sbatch call of submit_array
    return [f"{first.job_id}_{index}" for index in range(len(delayed))]


def start(folder: str, shared: str, env: dict[str, str] | None = None) -> None:
    """On the node: make sure this task's own pickle exists, then run it with submitit's runner."""
    from submitit.core.submission import process_job
    from submitit.core.utils import DelayedSubmission, JobPaths, pickle_load

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


if __name__ == "__main__":
    start(sys.argv[1], sys.argv[2])
