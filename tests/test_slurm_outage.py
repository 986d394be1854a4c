"""On the local Slurm cluster: with slurmctld down for 20 s, `hpcxlt submit` and `hpcxlt status` wait for it
(saying so) and finish correctly once it is back, instead of failing on the first refused call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster, start_controller, stop_controller  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local.yaml")
OUTAGE_S = 20


def _during_outage(slurm_env, *argv: str) -> subprocess.CompletedProcess:
    """Run `hpcxlt ARGV` while slurmctld is down, and bring it back after OUTAGE_S seconds."""
    env = {**slurm_env, "PYTHONPATH": str(ROOT)}
    stop_controller()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hpcxlt", *argv], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(OUTAGE_S)
        assert proc.poll() is None, f"hpcxlt {argv[0]} gave up during the outage: {proc.communicate()}"
    finally:
        start_controller(slurm_env)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_submit_and_status_ride_out_a_controller_outage(tmp_path, assets, slurm_env):
    data = experiment(assets, name="slurm-outage", arms=[{"name": "none"}],
                      targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}})
    run_dir = tmp_path / "run"
    submit = _during_outage(slurm_env, "submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir),
                            "--site", SITE, "--no-aggregate")
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert "Slurm is unreachable" in submit.stderr and "retrying in" in submit.stderr
    assert "submitted 2 jobs (2 cells)" in submit.stdout
    store = RunStore(run_dir)
    wait_for(lambda: all(store.is_done(c.key) for c in store.load_plan().cells), timeout=300,
             what="the submitted cells to finish", interval=2)
    status = _during_outage(slurm_env, "status", str(run_dir), "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    assert "Slurm is unreachable" in status.stderr
    report = json.loads(status.stdout)
    assert report["done"] is True and report["counts"]["done"] == report["cells"] == 2
