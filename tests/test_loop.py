"""Loop pieces that need no engine: preemption signals become a flag (and the old handlers come back),
the training log survives a kill mid-line and is cut back to the checkpoint on resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from hpcxlt.train.preemption import PREEMPT_SIGNALS, Preempted, preemption_signals
from hpcxlt.train.train_log import TrainLog


@pytest.mark.parametrize("signum", PREEMPT_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_sets_the_flag_and_old_handlers_come_back(signum: int):
    seen = []
    previous = signal.signal(signum, lambda s, f: seen.append(s))
    try:
        with preemption_signals() as flag:
            assert flag.signum is None
            os.kill(os.getpid(), signum)  # delivered to this (main) thread before kill() returns
            assert flag.signum == signum  # the process is still alive: the loop decides when to stop
        os.kill(os.getpid(), signum)
        assert seen == [signum]  # the handler from before the loop is back (submitit's, under Slurm)
    finally:
        signal.signal(signum, previous)


def test_preempted_names_signal_step_and_checkpoint(tmp_path: Path):
    err = Preempted(step=40, checkpoint=tmp_path / "step-40", signum=signal.SIGUSR2)
    assert str(err) == f"stopped by SIGUSR2 after step 40; checkpoint {tmp_path / 'step-40'}"
    assert err.step == 40 and err.signum == signal.SIGUSR2


def test_train_log_cut_back_to_the_checkpoint(tmp_path: Path):
    log = TrainLog(tmp_path / "train_log.jsonl")
    log.write({"event": "start", "step": 0})
    for step in range(1, 8):
        log.write({"step": step, "loss": 1.0 / step})
    with open(log.path, "a") as handle:
        handle.write('{"step": 8, "lo')  # killed while writing a line
    assert [r["step"] for r in log.records()] == list(range(8))
    log.truncate_after(5)  # resumed from step-5: steps 6 and 7 will be logged again
    assert [r["step"] for r in log.records()] == list(range(6))
    assert log.path.read_text().endswith("\n") and all(json.loads(line) for line in log.path.read_text().splitlines())
    log.truncate_after(-1)  # a fresh start forgets an attempt that never reached a checkpoint
    assert log.records() == []


@pytest.mark.deepspeed
@pytest.mark.slow
def test_batches_prepared_ahead_train_exactly_as_batches_prepared_in_the_loop(tmp_path: Path):
    """The prefetch thread draws the same batches in the same order; counts stay on the host. Same weights, same
    log (but for the speed figures), and a checkpoint records the consumed data position, not the prefetched one."""
    import json
    import os
    import subprocess
    import sys

    import torch

    repo = Path(__file__).resolve().parents[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    runs = {}
    for depth in (0, 3):
        out = tmp_path / f"prefetch-{depth}"
        proc = subprocess.run(
            [
                sys.executable,
                str(repo / "tests" / "ds_worker.py"),
                "--out",
                str(out),
                "--stage",
                "0",
                "--steps",
                "8",
                "--save-every",
                "4",
                "--keep-last",
                "3",
                "--prefetch",
                str(depth),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[depth] = out / "run-0"
    a, b = (torch.load(runs[d] / "final.pt") for d in (0, 3))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def log(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in row.items() if k not in ("samples_per_s", "tokens_per_s", "time", "peak_rss_gib")}
            for row in rows
        ]

    assert log(runs[0]) == log(runs[3])
    for step in (4, 8):
        states = [
            json.loads((runs[d] / "checkpoints" / f"step-{step}" / "trainer_state.json").read_text())["data"]
            for d in (0, 3)
        ]
        assert states[0] == states[1]
        assert states[0]["draws"] == step * 2  # grad_accum 2: the consumed micro-batches, none drawn ahead


def _ds_worker(out: Path, *args: str) -> subprocess.CompletedProcess:
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    return subprocess.run(
        [sys.executable, str(repo / "tests" / "ds_worker.py"), "--out", str(out), "--stage", "0", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# A dev curve that peaks at the second evaluation (step 4), then fails to beat 70 + min_delta three times in a row.
PEAKED = [
    "--steps",
    "20",
    "--eval-every",
    "2",
    "--save-every",
    "0",
    "--keep-last",
    "1",
    "--dev-metrics",
    "50,70,60,65,70.5,99,99,99,99,99",
    "--patience",
    "3",
    "--min-delta",
    "1",
]


@pytest.mark.deepspeed
@pytest.mark.slow
def test_the_best_dev_metric_is_selected_patience_stops_and_a_resumed_run_selects_the_same(tmp_path: Path):
    import torch

    def finished(out: Path) -> tuple[dict, list[dict]]:
        run = out / "run-0"
        return (
            json.loads((run / "result.json").read_text()),
            [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()],
        )

    straight = _ds_worker(tmp_path / "straight", *PEAKED)
    assert straight.returncode == 0, straight.stderr[-3000:]
    result, events = finished(tmp_path / "straight")
    # the early peak is exported, not the last step; patience 3 ends training at step 10 of 20 (the 99s never run)
    assert result["step"] == 10 and result["best_checkpoint"].endswith("step-4")
    assert result["selection"] == {"metric": 70.0, "step": 4, "bad_evals": 3, "stopped": True}
    evals = [(e["step"], e["metric"], e["best"]) for e in events if e.get("event") == "eval"]
    assert evals == [(2, 50.0, True), (4, 70.0, True), (6, 60.0, False), (8, 65.0, False), (10, 70.5, False)]
    assert [e["step"] for e in events if e.get("event") == "early_stop"] == [10]
    assert max(e["step"] for e in events if "loss" in e) == 10
    kept = sorted(p.name for p in (tmp_path / "straight" / "run-0" / "checkpoints").glob("step-*"))
    assert kept == ["step-10", "step-4"]  # keep_last 1 and the best

    # preempted at step 7 (after the peak, before the stop): the rerun resumes the selection state exactly
    first = _ds_worker(tmp_path / "resumed", *PEAKED, "--signal-at", "7")
    assert first.returncode == 75, first.stderr[-3000:]
    second = _ds_worker(tmp_path / "resumed", *PEAKED)
    assert second.returncode == 0, second.stderr[-3000:]
    again, again_events = finished(tmp_path / "resumed")
    assert again["resumed_from"].endswith("step-7")
    assert {k: again[k] for k in ("step", "selection")} == {k: result[k] for k in ("step", "selection")}
    assert [(e["step"], e["metric"], e["best"]) for e in again_events if e.get("event") == "eval"] == evals
    best, best_again = (torch.load(d / "run-0" / "best.pt") for d in (tmp_path / "straight", tmp_path / "resumed"))
    assert best.keys() == best_again.keys() and all(torch.equal(best[k], best_again[k]) for k in best)

    # a run that stopped early and is started again goes straight to its end: no step, no evaluation
    rerun = _ds_worker(tmp_path / "straight", *PEAKED)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    third, third_events = finished(tmp_path / "straight")
    assert (
        third["step"] == 10 and third["selection"] == result["selection"] and third["resumed_from"].endswith("step-10")
    )
    assert [(e["step"], e["metric"], e["best"]) for e in third_events if e.get("event") == "eval"] == evals
