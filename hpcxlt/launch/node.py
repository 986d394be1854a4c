"""The import path of the submitit callables in jobs queued before `launch/` had subpackages.

submitit pickles `SlurmTask`, `AggregateTask` and `FeederTask` by import path, and a job loads its
pickle when it starts (or starts again after a requeue), with the code installed then: pickles written
before the move name `hpcxlt.launch.node`. The classes live in `hpcxlt.launch.execute.slurm_tasks`;
this alias stays while such jobs may be queued (tests/test_old_pickles.py loads one).
"""

from hpcxlt.launch.execute.slurm_tasks import AggregateTask, FeederTask, SlurmTask

__all__ = ["AggregateTask", "FeederTask", "SlurmTask"]
