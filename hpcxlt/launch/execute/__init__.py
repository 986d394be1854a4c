"""Running a plan's jobs: one job on a node or in this process (`worker`), the submitit callables of a
Slurm job (`slurm_tasks`), the local executor (`local`)."""
