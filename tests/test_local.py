"""The local executor on the tiny model: dependency order, done jobs skipped, a failure blocks only its
dependants, and a killed run leaves a run directory that `resume` finishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hpcxlt.cli import main
from hpcxlt.config import parse_config
from hpcxlt.grid.plan import plan
from hpcxlt.launch.execute.local import job_log_path, run_local
from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, subprocess_env, write_config  # noqa: F401  (fixture)
from tests.paths import ROOT

pytestmark = pytest.mark.slow


def _status(run_dir, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_killed_run_resumes_in_dependency_order_and_skips_done_work(tmp_path, assets, capsys):
    # the intermediate run is long enough to be killed in the middle of it
    data = experiment(assets, targets={"tasks": ["xnli", "tatoeba"], "languages": {"xnli": ["en"], "tatoeba": ["de"]}})
    data["intermediate"]["max_steps"] = 40
    config = write_config(tmp_path, data)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcxlt", "submit", str(config), "--run-dir", str(run_dir), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = RunStore(run_dir)
    deadline = time.time() + 240
    while not list(store.checkpoints_dir("inter.en.s1").glob("step-*")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint of inter.en.s1 within 4 minutes"
        time.sleep(0.2)
    # each job runs in a process of its own (not the submitting one): `hpcxlt cancel` sends SIGTERM to the
    # process running the cell, which saves at the next step boundary; the run then stops too
    job_pid = store.state("inter.en.s1")["pid"]
    assert job_pid != proc.pid
    capsys.readouterr()
    assert main(["cancel", str(run_dir)]) == 0
    assert f"sent SIGTERM to local process(es) {job_pid}" in capsys.readouterr().out
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted while running inter.en.s1" in out and "hpcxlt resume" in out
    state = store.state("inter.en.s1")
    assert state["state"] == "cancelled" and "hpcxlt cancel" in state["reason"]
    status = _status(run_dir, capsys)
    cells = len(plan(store.load_config()).cells)
    assert status["done"] is False and status["counts"]["done"] == 0
    assert status["counts"]["cancelled"] == 1 and status["counts"]["pending"] == cells - 1

    # resume (in this process): everything runs, in dependency order, once
    report = run_local(run_dir, progress=False)
    grid = store.load_plan()
    assert report.ok and report.ran == [job.key for job in grid.jobs] and report.done_before == []
    assert all(store.is_done(cell.key) for cell in grid.cells)
    events = [
        json.loads(line)["event"]
        for line in store.train_log_path("inter.en.s1").read_text().splitlines()
        if "event" in json.loads(line)
    ]
    assert "preempted" in events and "resume" in events  # continued from its checkpoint, not from scratch
    for job in grid.jobs:  # every job started after its upstream cells were finished
        started = min(store.state(key)["started"] for key in job.cells)
        for dep in job.deps:
            assert started >= max(store.done_info(key)["finished"] for key in grid.job(dep).cells)
    # a second run finds nothing to do and touches nothing
    markers = {cell.key: store.done_info(cell.key) for cell in grid.cells}
    again = run_local(run_dir, progress=False)
    assert again.ran == [] and again.done_before == [job.key for job in grid.jobs]
    assert {cell.key: store.done_info(cell.key) for cell in grid.cells} == markers
    assert _status(run_dir, capsys)["done"] is True
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 0
    assert "nothing to resume: every cell is done" in capsys.readouterr().out


def test_a_failed_job_blocks_only_its_dependants(tmp_path, assets, capsys):
    # the 'qa' arm trains on SQuAD, which the synthetic benchmark of the fixture does not have
    data = experiment(
        assets,
        arms=[{"name": "none"}, {"name": "en", "tasks": ["mnli"]}, {"name": "qa", "tasks": ["squad"]}],
        targets={"tasks": ["tatoeba"], "languages": {"tatoeba": ["de", "sw"]}},
    )
    cfg = parse_config(data)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    report = run_local(store.root, progress=False)
    assert list(report.failed) == ["inter.qa.s1"]
    assert report.blocked == {"eval.qa.tatoeba.s1": "inter.qa.s1"}
    assert report.ran == ["inter.en.s1", "eval.none.tatoeba.s1", "eval.en.tatoeba.s1"]
    failed = store.state("inter.qa.s1")
    log = job_log_path(store, "inter.qa.s1")
    assert failed["state"] == "failed" and failed["log"] == str(log) and "squad" in failed["error"].lower()
    assert "Traceback" in log.read_text()  # the job's log holds the whole story
    assert all(store.state(k)["state"] == "pending" for k in ("eval.qa.tatoeba.s1.de", "eval.qa.tatoeba.s1.sw"))
    status = _status(store.root, capsys)
    assert status["done"] is False and status["counts"]["failed"] == 1 and status["counts"]["done"] == 5
    assert status["failed"] == [
        {
            "key": "inter.qa.s1",
            "stage": "intermediate",
            "error": failed["error"],
            "log": str(log),
            "job_id": failed["job_id"],
        }
    ]
    capsys.readouterr()
    main(["status", str(store.root)])
    text = capsys.readouterr().out
    assert "1 failed cell(s):" in text and f"log: {log}" in text


def test_a_cell_whose_local_process_died_shows_as_interrupted(tmp_path, capsys):
    import socket

    cfg = parse_config(experiment(tmp_path))
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    from hpcxlt.launch.record import write_launch

    write_launch(store, "local")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs, as after `kill -9` of a local run
    store.set_state("inter.en.s1", "running", host=socket.gethostname(), pid=dead.pid)
    alive = os.getpid()
    store.set_state("target.none.xnli.s1", "running", host=socket.gethostname(), pid=alive)
    status = _status(store.root, capsys)
    assert status["counts"]["running"] == 1 and status["counts"]["pending"] == status["cells"] - 1


def test_a_finished_run_is_readable_by_the_group_under_umask_022(tmp_path, assets):
    """Cluster sweeps are shared through the project's group: every file and folder of a finished run
    (config, plan, states, done markers, checkpoints, model, records, tables, plots) follows the umask."""
    config = write_config(tmp_path, experiment(assets, name="shared-run"))
    run_dir = tmp_path / "run"
    env = subprocess_env()
    for argv in (
        ["submit", str(config), "--run-dir", str(run_dir), "--no-progress"],
        ["aggregate", str(run_dir), "--partial"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "hpcxlt", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    store = RunStore(run_dir)
    assert all(store.is_done(cell.key) for cell in store.load_plan().cells)
    assert list((run_dir / "tables").glob("*.png")) and (store.model_dir("inter.en.s1") / "model.safetensors").is_file()
    private = [
        str(path.relative_to(run_dir))
        for path in [run_dir, *run_dir.rglob("*")]
        if not path.is_symlink()
        and path.stat().st_mode & (0o055 if path.is_dir() else 0o044) != (0o055 if path.is_dir() else 0o044)
    ]
    assert private == [], f"not readable by group/others under umask 022: {private[:10]}"


def test_each_job_runs_in_a_process_of_its_own_and_records_its_peak_memory(tmp_path, assets):
    """Two training cells in one local run: different processes, none of them this one, and the second's
    peak resident memory within 10% of the first's (one process for both grew with each cell)."""
    data = experiment(
        assets,
        arms=[
            {"name": "none"},
            {"name": "a", "tasks": ["mnli"]},
            {"name": "b", "tasks": ["mnli"], "train": {"lr": 5e-4}},
        ],
        targets={"tasks": ["tatoeba"], "languages": {"tatoeba": ["de"]}},
    )
    cfg = parse_config(data)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    report = run_local(store.root, progress=False)
    assert report.ok, report
    first, second = store.done_info("inter.a.s1"), store.done_info("inter.b.s1")
    pids = {store.state("inter.a.s1")["pid"], store.state("inter.b.s1")["pid"]}
    assert len(pids) == 2 and os.getpid() not in pids
    assert (
        first["peak_rss_gib"] > 0.1
        and abs(second["peak_rss_gib"] - first["peak_rss_gib"]) <= 0.1 * first["peak_rss_gib"]
    )
