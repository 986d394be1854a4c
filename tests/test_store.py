"""Run directory: initialization, refusal of a different experiment, state, done markers, records."""

import json
import os
import time

import pytest

from hpcxlt.grid import plan
from hpcxlt.grid.experiment import load_experiment
from hpcxlt.store import RunDirError, RunStore
from tests.paths import CONFIGS


@pytest.fixture
def demo():
    cfg = load_experiment(CONFIGS / "demo.yaml")
    return cfg, plan(cfg)


def test_initialize_writes_resolved_config_and_plan(tmp_path, demo):
    cfg, grid = demo
    store = RunStore(tmp_path / "run")
    assert store.initialize(cfg, grid) is True
    assert store.load_config() == cfg
    assert store.load_plan() == grid
    # the same experiment again is fine and changes nothing
    assert store.initialize(cfg, grid) is False


def test_config_and_plan_are_parsed_once_per_content(tmp_path, demo):
    """status and resume load them from several places: the same bytes give the same object, any change
    is read again (also by another RunStore of the same folder)."""
    cfg, grid = demo
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    assert store.load_plan() is RunStore(tmp_path / "run").load_plan()
    assert store.load_config() is store.load_config()
    bigger = load_experiment(CONFIGS / "demo.yaml", ["seeds=[1,2,3]"])
    store.initialize(bigger, plan(bigger))
    assert store.load_plan() == plan(bigger) and store.load_config() == bigger
    store.plan_path.write_text(store.plan_path.read_text()[:-20])
    with pytest.raises(RunDirError, match="is not valid JSON"):
        store.load_plan()


def test_different_experiment_is_refused_before_anything_is_overwritten(tmp_path, demo):
    cfg, grid = demo
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    before = store.config_path.read_bytes()
    other = load_experiment(CONFIGS / "demo.yaml", ["target.lr=5e-4"])
    with pytest.raises(
        RunDirError,
        match=r"holds a different experiment \(config differs at: target.lr\); 112 planned "
        r"cell\(s\) would change: target.none.xnli.s1",
    ):
        store.initialize(other, plan(other))
    assert store.config_path.read_bytes() == before


def test_an_additive_change_grows_the_run_keeping_every_state(tmp_path, demo):
    cfg, grid = demo
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    store.mark_done("inter.en.s1", {"step": 5})
    bigger = load_experiment(CONFIGS / "demo.yaml", ["seeds=[1,2,3]"])
    added = store.growth(bigger, plan(bigger))
    assert added and all(key.endswith(".s3") or ".s3." in key for key in added)
    assert store.initialize(bigger, plan(bigger)) is True
    assert store.load_plan() == plan(bigger) and store.done_info("inter.en.s1")["step"] == 5
    smaller = load_experiment(CONFIGS / "demo.yaml", ["seeds=[1]"])  # dropping cells is not growing
    with pytest.raises(RunDirError, match=r"planned cell\(s\) would disappear: inter.en.s2"):
        store.initialize(smaller, plan(smaller))


def test_state_and_done_marker(tmp_path):
    store = RunStore(tmp_path)
    key = "target.en.xnli.s1"
    assert store.state(key)["state"] == "pending"
    store.set_state(key, "running", job_id="123_4")
    assert store.state(key)["job_id"] == "123_4"
    assert not store.is_done(key)
    store.mark_done(key, {"steps": 10})
    assert store.is_done(key)
    assert store.state(key)["state"] == "done"
    assert store.done_info(key)["steps"] == 10
    with pytest.raises(ValueError):
        store.set_state(key, "exploded")


def test_done_keys_and_states_of_many_cells_agree_with_each_cell_asked_alone(tmp_path):
    """done_keys and states list the cells folder once and look up done markers only where a folder is;
    the answers are those of is_done and state, cell by cell."""
    store = RunStore(tmp_path)
    keys = [f"eval.none.xnli.s1.{lang}" for lang in ("de", "fr", "sw", "ur")]
    assert store.done_keys(keys) == set() and store.states(keys)[keys[0]] == {"state": "pending"}
    store.record_submission({key: ("10_1", "eval") for key in keys}, log_pattern=str(tmp_path / "{job_id}.out"))
    store.set_state(keys[1], "running", job_id="10_1")
    store.mark_done(keys[2])
    (tmp_path / "cells" / keys[3]).mkdir()  # a folder without a done marker (a model being written, say)
    view = store.assuming_done([keys[0]])
    for each in (store, view):
        assert each.done_keys(keys) == {key for key in keys if each.is_done(key)}
        assert each.states(keys) == {key: each.state(key) for key in keys}
    assert view.done_keys(keys) == {keys[0], keys[2]} and view.states(keys)[keys[0]]["state"] == "done"
    # without a done cell's details (status, resume): the same state and job id for every cell
    brief = store.states(keys, done_details=False)
    assert {k: (s["state"], s.get("job_id")) for k, s in brief.items()} == {
        k: (s["state"], s.get("job_id")) for k, s in store.states(keys).items()
    }
    assert brief[keys[2]]["job_id"] == "10_1"


def test_a_submission_is_one_record_and_every_cell_reads_its_state_from_it(tmp_path):
    store = RunStore(tmp_path)
    pattern = str(tmp_path / "logs" / "{job_id}_0_log.out")
    cells = {f"eval.none.xnli.s1.{lang}": ("10_3", "eval-xnli") for lang in ("de", "fr")}
    assert store.record_submission({"inter.en.s1": ("9", "inter"), **cells}, log_pattern=pattern) == 1
    assert [p.name for p in (tmp_path / "submissions").iterdir()] == ["000001.json"]
    assert not (tmp_path / "cells").exists()  # no file per cell
    state = store.state("eval.none.xnli.s1.de")
    assert state["state"] == "submitted" and state["job_id"] == "10_3" and state["array"] == "eval-xnli"
    assert state["log"] == str(tmp_path / "logs" / "10_3_0_log.out") and state["requeues"] == 0
    assert store.state("target.none.xnli.s1")["state"] == "pending"  # not in the record


def test_the_newer_of_a_cell_file_and_a_submission_record_wins(tmp_path):
    store = RunStore(tmp_path)
    key, pattern = "inter.en.s1", "/logs/{job_id}.out"
    store.record_submission({key: ("9", "inter")}, log_pattern=pattern)
    # the job on its node: what it writes continues submission 1 and keeps what the record said
    store.set_state(key, "running", attempts=1)
    store.set_state(key, "failed", error="CUDA out of memory", requeues=2)
    state = store.state(key)
    assert (state["state"], state["job_id"], state["log"], state["attempts"]) == ("failed", "9", "/logs/9.out", 1)
    # submitted again (a resume): the new record overrides the failure, keeps the attempts
    assert store.record_submission({key: ("12", "inter")}, log_pattern=pattern) == 2
    state = store.state(key)
    assert (state["state"], state["job_id"], state["error"], state["requeues"], state["attempts"]) == (
        "submitted",
        "12",
        None,
        0,
        1,
    )
    store.set_state(key, "running", attempts=2)
    assert store.state(key)["state"] == "running" and store.state(key)["job_id"] == "12"
    # a second RunStore (another process) sees the same; a record number is never reused
    other = RunStore(tmp_path)
    assert other.state(key)["state"] == "running"
    (tmp_path / "submissions" / "000004.json").write_text(
        '{"seq": 4, "submitted": 0, "log_pattern": "{job_id}", "cells": {}}'
    )
    assert other.record_submission({key: ("13", "inter")}, log_pattern=pattern) == 5
    assert store.state(key)["job_id"] == "13"


def test_result_records_go_to_their_jobs_file_and_are_not_silently_replaced_by_another_config(tmp_path, demo):
    _, grid = demo
    store = RunStore(tmp_path)
    job = grid.job_of("eval.none.xnli.s1.de").key
    de = {"key": "eval.none.xnli.s1.de", "split": "test", "score": 50.0, "config_hash": "aaa"}
    fr = {**de, "key": "eval.none.xnli.s1.fr", "score": 40.0}
    path = store.add_results(job, [de])
    assert path.name == f"{job}.jsonl"
    store.add_results(job, [fr, {**de, "split": "dev"}])
    store.add_results(job, [{**de, "score": 51.0}])  # same config: a rerun may refresh it
    assert [(r["key"][-2:], r["split"], r["score"]) for r in map(json.loads, path.read_text().splitlines())] == [
        ("fr", "test", 40.0),
        ("de", "dev", 50.0),
        ("de", "test", 51.0),
    ]
    before = path.read_bytes()
    with pytest.raises(
        RunDirError,
        match=rf"{job}.jsonl:3 holds a test result for eval.none.xnli.s1.de of a "
        "different config",
    ):
        store.add_results(job, [{**de, "config_hash": "bbb"}])
    assert path.read_bytes() == before  # refused before anything was written
    store.add_results(job, [{**de, "config_hash": "bbb"}], overwrite=True)
    assert [r["config_hash"] for r in store.cell_records("eval.none.xnli.s1.de", grid)] == ["aaa", "bbb"]
    assert [p.name for p in store.result_files()] == [f"{job}.jsonl"]


def test_a_jobs_records_are_read_by_cell_with_the_one_record_files_of_earlier_versions(tmp_path, demo):
    _, grid = demo
    store = RunStore(tmp_path)
    job = grid.job_of("eval.none.xnli.s1.de").key
    de = {"key": "eval.none.xnli.s1.de", "split": "test", "score": 50.0}
    store.add_results(job, [de, {**de, "key": "eval.none.xnli.s1.fr"}])
    store.results_dir.joinpath("eval.none.xnli.s1.de.dev.json").write_text(json.dumps({**de, "split": "dev"}))
    store.results_dir.joinpath("eval.none.xnli.s1.def.dev.json").write_text("{}")  # another key's prefix
    records = store.job_records(job, ["eval.none.xnli.s1.de", "eval.none.xnli.s1.ar"])
    assert {key: [r["split"] for r in rs] for key, rs in records.items()} == {
        "eval.none.xnli.s1.de": ["test", "dev"],
        "eval.none.xnli.s1.ar": [],
    }
    assert store.cell_records("eval.none.xnli.s1.de", grid) == records["eval.none.xnli.s1.de"]


def test_missing_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="is not a run directory"):
        RunStore(tmp_path / "nope").load_plan()


# -- the run directory lock ------------------------------------------------------------------------
def _hold(root: str, log: str, rounds: int) -> None:
    from hpcxlt.store import RunStore

    store = RunStore(root)
    for _ in range(rounds):
        with store.lock("test"):
            with open(log, "a") as handle:
                handle.write(f"in {os.getpid()}\n")
            time.sleep(0.05)
            with open(log, "a") as handle:
                handle.write(f"out {os.getpid()}\n")


def test_the_lock_admits_one_process_at_a_time(tmp_path):
    import multiprocessing

    log = tmp_path / "log"
    procs = [
        multiprocessing.get_context("spawn").Process(target=_hold, args=(str(tmp_path), str(log), 5)) for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 30
    for enter, leave in zip(lines[::2], lines[1::2]):  # never two holders: every 'in' is followed by its 'out'
        assert enter.startswith("in ") and leave == "out " + enter.split()[1]
    assert not (tmp_path / ".hpcxlt.lock").exists()


def test_a_held_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path, capsys):
    import json
    import socket
    import subprocess

    from hpcxlt.store import LOCK_FILE, RunDirError, RunLock, RunStore

    store = RunStore(tmp_path)
    with store.lock("resume"):
        with pytest.raises(
            RunDirError, match=rf"locked by `hpcxlt resume` \(host {socket.gethostname()}, pid {os.getpid()}, since"
        ):
            with store.lock("submit", wait_s=1):
                pass
    assert "waiting for the run directory lock held by `hpcxlt resume`" in capsys.readouterr().err
    # a holder on this host whose process is gone (kill -9, a crashed login session): taken over at once
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "command": "resume", "since": 0}))
    with store.lock("submit", wait_s=1):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()
    # another host: alive while its heartbeat is fresh, stale once it stopped
    path.write_text(json.dumps({"host": "login2", "pid": 1, "command": "resume", "since": time.time()}))
    with pytest.raises(RunDirError, match="host login2"):
        with store.lock("submit", wait_s=0.5):
            pass
    old = time.time() - RunLock.stale_s - 5
    os.utime(path, (old, old))
    with store.lock("submit", wait_s=1):
        assert json.loads(path.read_text())["host"] == socket.gethostname()


def test_a_held_lock_keeps_its_heartbeat(tmp_path, monkeypatch):
    from hpcxlt.store import LOCK_FILE, RunLock, RunStore

    monkeypatch.setattr(RunLock, "heartbeat_s", 0.1)
    with RunStore(tmp_path).lock("submit"):
        path = tmp_path / LOCK_FILE
        old = time.time() - 1000
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5
