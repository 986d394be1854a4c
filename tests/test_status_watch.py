"""`hpcxlt status --watch`: each running training cell's step, loss, dev metric and ETA, from its train log."""

from __future__ import annotations

import json
import os
import socket
import time

from hpcxlt.cli import main
from hpcxlt.launch.manage.progress import cell_progress, progress_rows
from tests.aggregate_fixture import make_run

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]
TARGETS = {"xnli": ["en", "de"]}
RUNNING = "target.en.xnli.s1"


def _run(tmp_path):
    store = make_run(tmp_path / "run", arms=ARMS, targets=TARGETS, seeds=[1], score=lambda *a: None)
    store.set_state(RUNNING, "running", pid=os.getpid(), host=socket.gethostname())
    now = time.time()
    records = [
        {"event": "start", "step": 0, "total_steps": 100, "time": now - 21},
        {"step": 10, "loss": 0.9, "samples_per_s": 30.0, "time": now - 11},
        {"step": 20, "loss": 0.7, "samples_per_s": 32.0, "peak_rss_gib": 1.25, "time": now - 1},
        {"event": "eval", "step": 20, "metric": 55.0, "best_metric": 55.0, "time": now},
    ]
    path = store.train_log_path(RUNNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 21, "lo')  # a line being written
    return store


def test_progress_of_a_running_cell_from_its_train_log(tmp_path):
    store = _run(tmp_path)
    progress = cell_progress(store.train_log_path(RUNNING))
    assert (progress["step"], progress["total_steps"], progress["loss"], progress["dev_metric"]) == (20, 100, 0.7, 55.0)
    assert abs(progress["eta_s"] - 80 * 21 / 20) < 1e-6  # 80 steps left at 21 s per 20 steps of this attempt
    assert progress_rows({RUNNING: progress}) == [
        (RUNNING, "20/100 (20%)", "0.7000", "55.00 (best 55.00)", "32.0", "1.25", "1m24s")
    ]
    assert cell_progress(tmp_path / "nothing.jsonl") is None


def test_status_shows_it_and_watch_redraws_until_told_to_stop(tmp_path, capsys):
    store = _run(tmp_path)
    assert main(["status", str(store.root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["progress"][RUNNING]["step"] == 20 and status["counts"]["running"] == 1
    assert main(["status", str(store.root), "--watch", "0.01", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{RUNNING}" in out and "20/100 (20%)" in out and "1m2" in out and "peak" in out and "1.25" in out
    # nothing queued or running: one redraw, then it returns (no waiting)
    store.set_state(RUNNING, "failed", error="test")
    started = time.perf_counter()
    assert main(["status", str(store.root), "--watch", "30"]) == 0
    assert time.perf_counter() - started < 10 and "failed cell" in capsys.readouterr().out
    assert main(["status", str(store.root), "--watch", "--json"]) == 2
