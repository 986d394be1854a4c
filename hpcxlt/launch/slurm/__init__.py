"""Submission to Slurm: sbatch requests and held submission (`submission`), element-wise aligned arrays
(`arrays`) sharing one pickle (`shared_array`), what is left to submit (`pending`), waves under a queue
limit (`waves`), the scheduler's commands with retries (`queue`) and the batch scripts' EXIT trap that
requeues a killed job (`exit_trap`)."""
