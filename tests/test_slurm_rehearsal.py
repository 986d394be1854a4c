"""`hpcxlt submit --rehearse` on the local Slurm cluster: a small grid (2 arms x 1 target x 1 seed) rehearsed
with the site's own jobs. Every job runs, the first training job of each stage is preempted, requeued by Slurm
(an accounting record per attempt) and resumes from its checkpoint, the aggregation job runs and writes the
report, which holds the measured rates and the real run's estimate. (Locally: tests/test_rehearsal.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest

from hpcxlt.launch.rehearsal import default_dir
from hpcxlt.store import RunStore
from hpcxlt.store.rehearsal import read_rehearsal
from tests.launch_assets import assets, experiment, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local.yaml")


def test_a_rehearsal_on_the_cluster_runs_every_job_and_requeues_one_per_training_stage(tmp_path, assets, slurm_env):
    data = experiment(assets, name="slurm-rehearse", targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}})
    data["target"].update(max_steps=300, eval_every=100)
    config = write_config(tmp_path, data)
    real = tmp_path / "real"
    code, out = run_cli("submit", str(config), "--run-dir", str(real), "--site", SITE, "--rehearse")
    assert code == 0, out
    assert "submitted 5 jobs (7 cells)" in out and "+ the aggregation job" in out
    assert not real.exists()  # the real run's directory is never made
    store = RunStore(default_dir(real))

    def reported():
        record = read_rehearsal(store)
        report = record and record.get("report")
        return report if report and report["finished"] else None

    # the aggregation job, the rehearsal's last, writes the report
    report = wait_for(reported, timeout=480, what="the rehearsal's jobs and its report", interval=3)
    assert report["ok"], json.dumps(report, indent=1)[-3000:]
    assert {s["stage"]: s["passed"] for s in report["stages"]} == {
        "intermediate": 1,
        "target": 2,
        "eval": 2,
        "aggregate": 1,
    }
    assert store.tables_json.is_file() and all(store.is_done(c.key) for c in store.load_plan().cells)
    # the forced requeue went through Slurm: one accounting record per attempt, the cell resumed from step 1
    assert [r["job"] for r in report["requeues"]] == ["inter.en.s1", "target.none.xnli.s1"]
    for forced in report["requeues"]:
        assert forced["ok"] and forced["resumed_from"].endswith("step-1"), forced
        state = store.state(forced["job"])
        assert state["attempts"] == 2 and state["requeues"] == 1, state
        acct = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-D", "-j", state["job_id"], "-o", "State"],
            capture_output=True,
            text=True,
            check=True,
            env=slurm_env,
        ).stdout.split()
        assert acct == ["REQUEUED", "COMPLETED"], acct
    # an unforced training job was not requeued
    assert store.state("target.en.xnli.s1")["attempts"] == 1
    # measured rates and the real run's estimate (300 target steps of 8 examples per target job)
    assert report["rates"]["target"]["seconds_per_step"] > 0 and report["rates"]["eval"]["examples_measured"] > 0
    rows = {r["stage"]: r for r in report["estimate"]["stages"]}
    assert rows["target"]["samples"] == 2 * 300 * 8 and rows["target"]["measured"] and rows["target"]["gpu_hours"] > 0
    # `hpcxlt status` of the rehearsal: its table, from the same report
    code, out = run_cli("status", str(store.root))
    assert code == 0 and "rehearsal" in out and "PASSED" in out
