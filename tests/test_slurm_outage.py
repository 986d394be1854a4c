"""On the local Slurm cluster: with slurmctld down for 20 s, `hpcxlt submit` and `hpcxlt status` wait for it
(saying so) and finish correctly once it is back, instead of failing on the first refused call; a stage
that sbatch refuses outright takes the run's other (held) arrays out of the queue again. Neither leaves
a retried or refused call's pickle or batch script behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcxlt", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(OUTAGE_S)
        assert proc.poll() is None, f"hpcxlt {argv[0]} gave up during the outage: {proc.communicate()}"
    finally:
        start_controller(slurm_env)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _leftovers(run_dir: Path) -> list[str]:
    """Files of sbatch calls that did not submit: a job's pickle before its id is known, submitit's
    batch script before it is moved into the job's folder, an array's shared pickle."""
    folder = run_dir / "logs" / "slurm"
    # (a submitted job's script stays as a link at its first name; its pickle is <job id>_submitted.pkl)
    names = [
        p.name
        for p in folder.iterdir()
        if not p.is_symlink() and (re.fullmatch(r"[0-9a-f]{32}\.pkl", p.name) or p.name.startswith(".submission_file_"))
    ]
    return names + [p.name for p in (folder / "arrays").glob("*.pkl")] if (folder / "arrays").is_dir() else names


def test_submit_and_status_ride_out_a_controller_outage(tmp_path, assets, slurm_env):
    data = experiment(
        assets, name="slurm-outage", arms=[{"name": "none"}], targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}}
    )
    run_dir = tmp_path / "run"
    submit = _during_outage(
        slurm_env,
        "submit",
        str(write_config(tmp_path, data)),
        "--run-dir",
        str(run_dir),
        "--site",
        SITE,
        "--no-aggregate",
    )
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert "Slurm is unreachable" in submit.stderr and "retrying in" in submit.stderr
    assert "submitted 2 jobs (2 cells)" in submit.stdout
    assert _leftovers(run_dir) == []  # the calls refused during the outage left nothing behind
    store = RunStore(run_dir)
    wait_for(
        lambda: all(store.is_done(c.key) for c in store.load_plan().cells),
        timeout=300,
        what="the submitted cells to finish",
        interval=2,
    )
    status = _during_outage(slurm_env, "status", str(run_dir), "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    assert "Slurm is unreachable" in status.stderr
    report = json.loads(status.stdout)
    assert report["done"] is True and report["counts"]["done"] == report["cells"] == 2


def test_a_stage_sbatch_refuses_takes_the_held_arrays_out_again_and_leaves_no_file(tmp_path, assets, slurm_env):
    site = yaml.safe_load(Path(SITE).read_text())
    site["stages"]["eval"] = {"partition": "nosuch"}  # sbatch: invalid partition name specified
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(site))
    data = experiment(
        assets,
        name="slurm-refused",
        arms=[{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
    )
    run_dir = tmp_path / "run"
    env = {**slurm_env, "PYTHONPATH": str(ROOT)}
    submit = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpcxlt",
            "submit",
            str(write_config(tmp_path, data)),
            "--run-dir",
            str(run_dir),
            "--site",
            str(site_path),
            "--no-aggregate",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert submit.returncode == 2, submit.stdout + submit.stderr
    assert "sbatch refused eval" in submit.stderr and "invalid partition" in submit.stderr.lower()
    assert re.search(r"cancelled the \d+ other submission\(s\) of this run", submit.stderr), submit.stderr
    queued = subprocess.run(
        [
            "squeue",
            "-h",
            "-o",
            "%j",
            "--name",
            ",".join(f"hpcxlt-slurm-refused-{stage}" for stage in ("intermediate", "target", "eval")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert queued.returncode == 0 and queued.stdout.split() == []  # held, then cancelled: nothing ran
    assert not RunStore(run_dir).cell_states.submissions()  # no submission recorded
    assert _leftovers(run_dir) == []
