"""Launching a plan and keeping it going, in four subpackages: `site` (site profiles and the preflight
job), `slurm` (submission to Slurm), `execute` (what runs a job, on a node or locally) and `manage`
(status, cancel, redo, reports). Shared by all four: `record` (the launch record and the aggregation's
state), `submit` (submit and resume under the run-directory lock) and `submit_checks`.

`node`, `heal` and `shared_array` here are the paths queued jobs name (pickles, batch scripts): they
stay, each a few lines over its subpackage.
"""
