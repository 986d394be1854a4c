"""What `hpcxlt status` tells a researcher about a local run: the aggregation done when its tables exist, a run
still at work (no `resume` advice then), a cancelled cell as cancelled, and the way to the tables."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from hpcxlt.aggregate.aggregate_run import Options, aggregate
from hpcxlt.launch.manage.cancel import cancel_run
from hpcxlt.launch.record import write_launch
from tests.aggregate_fixture import make_run
from tests.launch_assets import run_cli

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]


def _run(tmp_path):
    store = make_run(tmp_path / "run", arms=ARMS, targets={"xnli": ["en", "de"]}, seeds=[1], score=lambda *_: 60.0)
    write_launch(store, "local")
    for cell in store.load_plan().cells:
        store.mark_done(cell.key)
    return store


def _status(store) -> tuple[dict, str]:
    code, out = run_cli("status", str(store.root), "--json")
    assert code == 0
    code, text = run_cli("status", str(store.root))
    assert code == 0
    return json.loads(out), text


def test_all_done_points_to_aggregate_then_the_tables_count_as_the_aggregation(tmp_path):
    store = _run(tmp_path)
    status, text = _status(store)
    assert status["done"] and status["aggregate"]["state"] == "pending"
    assert f"`hpcxlt aggregate {store.root}` writes the tables" in text
    aggregate(store.root, Options(plots=False))
    status, text = _status(store)
    assert status["aggregate"]["state"] == "done" and status["aggregate"]["tables"] == str(store.tables_json)
    assert "all cells done; the tables are written" in text and "resume" not in text


def test_a_local_run_at_work_is_named_and_not_told_to_resume(tmp_path):
    store = _run(tmp_path)
    cell = store.load_plan().stage_cells("eval")[0].key
    (store.cell_dir(cell) / "done.json").unlink()
    store.set_state(cell, "pending")
    with store.lock("submit"):
        status, text = _status(store)
    assert status["working"]["command"] == "submit"
    assert "at work now: `hpcxlt submit`" in text and "hpcxlt resume" not in text
    status, text = _status(store)  # the lock given back: now resume is the advice
    assert status["working"] is None and f"`hpcxlt resume {store.root}`" in text


def test_a_cell_stopped_by_cancel_shows_as_cancelled(tmp_path):
    store = _run(tmp_path)
    cell = store.load_plan().stage_cells("eval")[0].key
    (store.cell_dir(cell) / "done.json").unlink()
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        store.set_state(cell, "running", pid=worker.pid, host=socket.gethostname(), started=time.time())
        stopped = cancel_run(store.root)
        assert stopped["cells"] == 1 and stopped["jobs"] == [str(worker.pid)]
        worker.wait(timeout=30)
    finally:
        worker.kill()
    status, text = _status(store)
    assert status["counts"]["cancelled"] == 1 and status["counts"]["pending"] == 0
    assert "cancelled" in text and f"`hpcxlt resume {store.root}`" in text


def test_a_record_cut_short_is_not_done_and_the_next_run_evaluates_it_again(tmp_path):
    """A job's results file whose line was cut: status no longer says all done, and resume puts the line
    aside (nothing lost), un-does exactly that cell and evaluates it again."""
    import orjson

    store = make_run(
        tmp_path / "run", arms=ARMS, targets={"xnli": ["en", "de"]}, seeds=[1], score=lambda *_: 60.0, layout="jobs"
    )
    write_launch(store, "local")
    for cell in store.load_plan().cells:
        store.mark_done(cell.key)
    job = store.load_plan().stage_jobs("eval")[0]
    path = store.job_results_path(job.key)
    lines = path.read_text().splitlines()
    cut = orjson.loads(lines[-1])["key"]
    path.write_text("\n".join(lines[:-1] + [lines[-1][:40]]) + "\n")
    status, text = _status(store)
    assert not status["done"] and status["counts"]["failed"] == 1
    assert "cannot be read" in text and f"line {len(lines)} is not a JSON record" in text
    assert store.repair_records(store.load_plan()) == [cut]
    aside = list(path.parent.glob(f"{path.name}.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == lines[-1][:40] + "\n"
    assert [orjson.loads(line)["key"] for line in path.read_text().splitlines()] == [
        orjson.loads(line)["key"] for line in lines[:-1]
    ]
    assert not store.is_done(cut) and all(store.is_done(k) for k in job.cells if k != cut)
    status, _ = _status(store)
    assert status["counts"]["pending"] == 1 and status["counts"]["failed"] == 0


def test_status_shows_the_hours_used_per_stage_beside_the_plans_estimate(tmp_path):
    store = _run(tmp_path)
    plan = store.load_plan()
    now = time.time()
    for job in plan.jobs:  # each job: started an hour ago, done half an hour later
        for key in job.cells:
            store.set_state(key, "done", started=now - 3600)
            info = store.done_info(key)
            (store.cell_dir(key) / "done.json").write_text(json.dumps({**info, "finished": now - 1800}))
    status, text = _status(store)
    cost = status["cost"]
    jobs = {stage: len(plan.stage_jobs(stage)) for stage in cost}
    for stage, c in cost.items():
        assert c["used_hours"] == pytest.approx(0.5 * jobs[stage])  # hand-worked: half an hour a job
        assert c["used_gpu_hours"] is None and c["remaining_gpu_hours"] == 0 and c["cells_done"] == c["cells"]
    assert "used GPU-h" in text and "plan GPU-h" in text
