"""On the local Slurm cluster: a scancelled job and a failing evaluation show up in `status` (with the
log); `resume` resubmits exactly the cells that are neither done nor queued, and a second resume nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from hpcxlt.launch.slurm import queue
from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, queued, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local.yaml")


def _status(run_dir) -> dict:
    code, out = run_cli("status", str(run_dir), "--json", "--cells")
    assert code == 0
    return json.loads(out)


def test_resume_resubmits_exactly_the_cancelled_and_failed_cells(tmp_path, assets, slurm_env):
    # a private copy of the data without Tatoeba's Swahili test file: that evaluation fails for real
    data_root = tmp_path / "synth"
    shutil.copytree(assets / "synth", data_root)
    missing = data_root / "tatoeba" / "sw" / "test.jsonl"
    backup = tmp_path / "tatoeba-sw-test.jsonl"
    missing.rename(backup)
    data = experiment(
        assets,
        name="slurm-resume",
        arms=[{"name": "none"}],
        seeds=[1, 2],
        targets={"tasks": ["xnli", "tatoeba"], "languages": {"xnli": ["en", "de"], "tatoeba": ["de", "sw"]}},
    )
    data["data"].update(root=str(data_root), cache_dir=str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    code, out = run_cli(
        "submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--site", SITE, "--no-aggregate"
    )
    assert code == 0, out
    store = RunStore(run_dir)
    # scancel one evaluation job while it waits for its target run
    victim = store.state("eval.none.xnli.s2.en")["job_id"]
    assert queue.alive_jobs()[victim] == "PENDING"
    queue.cancel([victim])
    wait_for(lambda: not queued(run_dir), timeout=300, what="every job of the run to leave the queue", interval=2)

    status = _status(run_dir)
    states = status["cell_states"]
    assert sorted(k for k, s in states.items() if s == "cancelled") == ["eval.none.xnli.s2.de", "eval.none.xnli.s2.en"]
    failed = {cell["key"]: cell for cell in status["failed"]}
    assert sorted(failed) == ["eval.none.tatoeba.s1.sw", "eval.none.tatoeba.s2.sw"]
    for cell in failed.values():
        assert "sw" in cell["error"] and cell["job_id"]
        log = run_dir / "logs" / "slurm" / f"{cell['job_id']}_0_log.out"
        assert cell["log"] == str(log) and cell["error"].split(":")[0] in log.read_text()
    code, text = run_cli("status", str(run_dir))
    assert "2 failed cell(s):" in text and f"log: {failed['eval.none.tatoeba.s1.sw']['log']}" in text
    not_done = sorted(k for k, s in states.items() if s != "done")
    assert len(not_done) == 4 and status["counts"]["done"] == status["cells"] - 4

    backup.rename(missing)  # fix the cause, then resume
    cells = [c.key for c in store.load_plan().cells]
    before = {key: store.state(key).get("job_id") for key in cells}
    code, out = run_cli("resume", str(run_dir))
    assert code == 0 and "resubmitted 4 cells in 3 jobs" in out, out
    assert sorted(key for key in cells if store.state(key).get("job_id") != before[key]) == not_done
    code, out = run_cli("resume", str(run_dir))
    assert code == 0 and "nothing to resume" in out  # the resubmitted jobs are queued: nothing twice
    wait_for(lambda: _status(run_dir)["done"], timeout=300, what="the resubmitted cells to finish", interval=3)


def test_cancel_stops_every_queued_job_and_resume_brings_them_back(tmp_path, assets, slurm_env):
    data = experiment(
        assets, name="slurm-cancel", arms=[{"name": "none"}], targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}}
    )
    run_dir = tmp_path / "run"
    code, out = run_cli("submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--site", SITE)
    assert code == 0 and "submitted 2 jobs (2 cells)" in out and "+ the aggregation job" in out
    ids = queued(run_dir)
    assert len(ids) == 3
    code, out = run_cli("cancel", str(run_dir))
    assert code == 0 and "cancelled 3 Slurm job(s) covering 2 unfinished cell(s)" in out
    wait_for(lambda: not queued(run_dir), timeout=60, what="the cancelled jobs to leave the queue")
    status = _status(run_dir)
    assert status["counts"]["cancelled"] == 2 and status["aggregate"]["state"] == "cancelled"
    code, out = run_cli("resume", str(run_dir))
    assert code == 0 and "resubmitted 2 cells in 2 jobs + the aggregation job" in out
    assert queued(run_dir).isdisjoint(ids) and len(queued(run_dir)) == 3
    code, out = run_cli("cancel", str(run_dir))
    assert "cancelled 3 Slurm job(s)" in out
    code, out = run_cli("cancel", str(run_dir))
    assert "nothing to cancel" in out


def test_cancel_also_stops_a_queued_job_whose_cells_are_all_done(tmp_path, assets, slurm_env):
    """A job still in the queue although its cells are done (finished by an earlier job, marked by hand):
    cancel leaves nothing of the run in the queue (it once skipped such jobs: they would start and idle)."""
    data = experiment(
        assets,
        name="slurm-cancel-done",
        arms=[{"name": "none"}],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}},
    )
    run_dir = tmp_path / "run"
    code, out = run_cli("submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--site", SITE)
    assert code == 0 and "submitted 2 jobs (2 cells)" in out
    store = RunStore(run_dir)
    (eval_cell,) = [c.key for c in store.load_plan().cells if c.stage == "eval"]
    store.mark_done(eval_cell, {"splits": ["test"]})
    assert len(queued(run_dir)) == 3
    code, out = run_cli("cancel", str(run_dir))
    assert code == 0 and "cancelled 3 Slurm job(s) covering 1 unfinished cell(s)" in out
    wait_for(lambda: not queued(run_dir), timeout=60, what="the cancelled jobs to leave the queue")


def test_resume_releases_jobs_that_an_interrupted_submission_left_held(tmp_path, assets, slurm_env):
    import yaml

    from hpcxlt.config import parse_config
    from hpcxlt.grid.plan import plan
    from hpcxlt.launch.site.profile import load_site
    from hpcxlt.launch.slurm import submission as slurm
    from hpcxlt.launch.slurm.pending import pending_work
    from hpcxlt.launch.submit import site_record

    cfg = parse_config(
        experiment(
            assets,
            name="slurm-held",
            arms=[{"name": "none"}],
            targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}},
        )
    )
    grid = plan(cfg)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    site = load_site(SITE)
    from hpcxlt.launch.record import write_launch

    write_launch(store, "slurm", site_record(site, yaml.safe_load(open(SITE))), aggregate=False)
    # a submission that died after sbatch and before `scontrol release`
    slurm.submit(store, grid, site, pending_work(store, grid, {}, with_aggregate=False), cfg.name, release=False)
    ids = queued(store.root)
    assert len(ids) == 2 and ids <= queue.held_jobs()
    code, out = run_cli("resume", str(store.root))
    assert code == 0 and "released 2 job(s) left held by an interrupted submission" in out
    assert "nothing to resume" in out and not (queued(store.root) & queue.held_jobs())
    run_cli("cancel", str(store.root))


def test_two_concurrent_resumes_submit_each_missing_cell_once(tmp_path, assets, slurm_env):
    """The run directory's lock: the second `hpcxlt resume` waits for the first, then finds the work queued."""
    import os
    import subprocess
    import sys

    data = experiment(
        assets,
        name="slurm-two-resumes",
        arms=[{"name": "none"}],
        seeds=[1, 2],
        targets={"tasks": ["xnli", "tatoeba"], "languages": {"xnli": ["en", "de"], "tatoeba": ["de", "sw"]}},
    )
    run_dir = tmp_path / "run"
    code, out = run_cli(
        "submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--site", SITE, "--no-aggregate"
    )
    assert code == 0, out
    run_cli("cancel", str(run_dir))  # every cell is missing now
    wait_for(lambda: not queued(run_dir), timeout=60, what="the cancelled jobs to leave the queue")
    names = "hpcxlt-slurm-two-resumes-target,hpcxlt-slurm-two-resumes-eval"

    def listed() -> list[str]:
        return subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "--name", names], capture_output=True, text=True, check=True
        ).stdout.split()

    before = set(listed())  # e.g. left by an earlier run of this test
    # a busy controller: sbatch answers after a second, so both resumes read the queue before either
    # has submitted anything (without the lock, both would submit everything)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sbatch").write_text(f'#!/bin/sh\nsleep 1\nexec {shutil.which("sbatch")} "$@"\n')
    (shim / "sbatch").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shim}:{os.environ['PATH']}"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hpcxlt", "resume", str(run_dir), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), results
    jobs = sorted(json.loads(out.strip().splitlines()[-1])["jobs"] for out, _ in results)
    store = RunStore(run_dir)
    plan_jobs = len(store.load_plan().jobs)
    assert jobs == [0, plan_jobs]  # one resubmitted everything, the other found it queued
    # the queue holds each job of the plan exactly once (whatever the run directory recorded)
    new = [jid for jid in listed() if jid not in before]
    assert len(new) == len(set(new)) == plan_jobs
    run_cli("cancel", str(run_dir))
