"""A tiny grid submitted to the local Slurm cluster: every cell finishes, dependencies are element-wise, the
MPI aggregation runs, and what `--dry-run` printed is exactly what went to sbatch. (A grid on the two compute
nodes: tests/test_slurm_multinode.py.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from hpcxlt.launch.record import aggregate_state
from hpcxlt.launch.slurm import queue
from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import frozen, slurm_cluster, task_pids  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local.yaml")


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, assets, slurm_env):
    """Arm 'a' trains briefly, arm 'b' much longer; one target (2 languages), one seed; submitted, then waited on."""
    tmp = tmp_path_factory.mktemp("slurm-grid")
    data = experiment(
        assets,
        name="slurm-grid",
        arms=[
            {"name": "a", "tasks": ["mnli"]},
            {"name": "b", "tasks": ["mnli"], "train": {"max_steps": 60, "save_every": 30}},
        ],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
    )
    config = write_config(tmp, data)
    # the run directory's path holds what an unquoted batch script would run, both quotes and spaces
    # (issue: paths reached the EXIT trap unquoted): every job must run there and nothing else run
    run_dir = tmp / 'run $(touch $HPCXLT_PWNED_MARK) it\'s "q"'
    os.environ["HPCXLT_PWNED_MARK"] = str(tmp / "pwned")  # sbatch exports it to every job
    code, dry = run_cli("submit", str(config), "--run-dir", str(run_dir), "--site", SITE, "--dry-run")
    assert code == 0 and not run_dir.exists()
    # rendezvous variables in the submitting shell (as an in-process run leaves them) must not reach the
    # jobs: the two intermediate runs would both take port 29999 and fail
    leaked = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    saved = {k: os.environ.get(k) for k in leaked}
    os.environ.update(leaked)
    try:
        code, out = run_cli("submit", str(config), "--run-dir", str(run_dir), "--site", SITE)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    assert code == 0, out
    store = RunStore(run_dir)
    # Independent of the machine's speed: inter.b (the long one) is held still, once it trains, until target.a
    # (which waits for inter.a alone) has started; so target.a starts before inter.b ends on any machine.
    wait_for(
        lambda: (
            store.state("inter.b.s1").get("state") == "running"
            and len(task_pids(store.state("inter.b.s1")["job_id"])) == 1
        ),
        timeout=300,
        what="inter.b to train",
        interval=0.2,
    )
    with frozen(store.state("inter.b.s1")["job_id"], 1):
        wait_for(
            lambda: store.state("target.a.xnli.s1").get("started"),
            timeout=300,
            what="target.a to start (its own intermediate done, inter.b held)",
            interval=0.2,
        )

    def finished():
        agg = aggregate_state(store)
        done = all(store.is_done(c.key) for c in store.load_plan().cells)
        return done and agg.get("state") in ("done", "failed")

    wait_for(finished, timeout=420, what="the grid and its aggregation to finish", interval=2)
    return {"run_dir": run_dir, "dry": dry, "submit": out, "store": store, "tmp": tmp}


def test_a_run_directory_path_with_shell_syntax_runs_its_jobs_and_nothing_else(grid_run):
    assert not Path(os.environ["HPCXLT_PWNED_MARK"]).exists()
    assert sorted(p.name for p in grid_run["tmp"].iterdir()) == sorted([grid_run["run_dir"].name, "slurm-grid.yaml"])
    # every job's EXIT trap ran heal on the literal path (it says what it found in the job's log); the trap runs
    # as its job ends, which can be a moment after the cells and the aggregation recorded that they are done
    logs = list((grid_run["store"].logs_dir / "slurm").glob("*_0_log.out"))
    assert logs
    wait_for(
        lambda: all("hpcxlt heal:" in log.read_text() for log in logs),
        timeout=120,
        what="every job's EXIT trap to report",
        interval=1,
    )
    assert not Path(os.environ["HPCXLT_PWNED_MARK"]).exists()


def test_every_cell_is_done_and_the_aggregation_ran(grid_run):
    code, out = run_cli("status", str(grid_run["run_dir"]), "--json")
    status = json.loads(out)
    assert status["done"] is True and status["executor"] == "slurm"
    assert status["counts"]["done"] == status["cells"] == 2 + 2 + 4 and status["failed"] == []
    assert status["aggregate"]["state"] == "done"
    # hours used, from sacct over every attempt (a CPU cluster: no GPU-hours), beside the plan's estimate
    cost = status["cost"]
    assert all(c["used_hours"] > 0 and c["used_gpu_hours"] == 0 for c in cost.values())
    assert all(c["remaining_gpu_hours"] == 0 for c in cost.values())
    assert (grid_run["run_dir"] / "tables" / "tables.json").exists()
    # the whole submission was one aligned array per stage + the aggregation
    assert "submitted 6 jobs (8 cells) in 4 sbatch submissions (3 arrays) + the aggregation job" in grid_run["submit"]


def test_a_target_run_starts_as_soon_as_its_own_intermediate_is_done(grid_run):
    store = grid_run["store"]
    # target.a waited for inter.a only: it started while inter.b (same array, 15x the steps, held) still ran
    target_a_start = store.state("target.a.xnli.s1")["started"]
    assert store.done_info("inter.a.s1")["finished"] <= target_a_start < store.done_info("inter.b.s1")["finished"]
    # and Slurm's accounting agrees (times to the second)
    ids = {key: store.state(key)["job_id"] for key in ("inter.a.s1", "inter.b.s1", "target.a.xnli.s1")}
    acct = queue.accounting(ids.values())
    assert acct[ids["inter.a.s1"]]["End"] <= acct[ids["target.a.xnli.s1"]]["Start"] < acct[ids["inter.b.s1"]]["End"]
    # the eval of b started only after target.b was done
    assert store.state("eval.b.xnli.s1.en")["started"] >= store.done_info("target.b.xnli.s1")["finished"]


def test_dry_run_printed_exactly_the_submitted_sbatch_scripts(grid_run):
    store, dry = grid_run["store"], grid_run["dry"]
    sections = dict(s.split("\n", 1) for s in dry.split("\n==> ")[1:])
    scripts = {title.split(":")[0]: body for title, body in sections.items()}
    arrays = {}
    for cell in store.load_plan().cells:
        state = store.state(cell.key)
        arrays.setdefault(state["array"], state["job_id"])
    arrays["aggregate"] = aggregate_state(store)["job_id"]
    assert set(arrays) == set(scripts)
    roots = {name: queue.array_root(jid) for name, jid in arrays.items()}
    for name, text in scripts.items():
        expected = re.sub(r"@([a-z]+\.\d+|aggregate)", lambda m: roots[m.group(1)], text)
        submitted = (store.logs_dir / "slurm" / f"{roots[name]}_submission.sh").read_text()
        # an array's shared pickle is named at submission: the dry run shows @uuid in its place
        for pickle in re.findall(r"arrays/[^/'\s]+\.[0-9a-f]{12}\.pkl", submitted):
            assert (store.logs_dir / "slurm" / pickle).is_file()
        assert re.sub(r"\.[0-9a-f]{12}\.pkl", ".@uuid.pkl", submitted) == expected


def test_resume_of_a_finished_grid_submits_nothing(grid_run):
    code, out = run_cli("resume", str(grid_run["run_dir"]))
    assert code == 0 and "nothing to resume" in out
