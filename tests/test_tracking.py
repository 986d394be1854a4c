"""Live curves: TensorBoard event files read back with tensorboard's own reader (a requeue continues them),
W&B offline runs that keep their id across requeues, and a missing W&B package stops `submit`, not the jobs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hpcxlt.config import TrackingConfig
from hpcxlt.train.tracking import TENSORBOARD_DIR, WANDB_DIR, Tracker, TrackingError, require_packages, run_id
from tests.paths import CONFIGS


def _step(step: int, loss: float) -> dict:
    return {
        "step": step,
        "loss": loss,
        "loss_per_task": {"mnli": loss},
        "lr": 1e-5 * step,
        "grad_norm": 0.5,
        "samples_per_s": 10.0,
        "tokens_per_s": 1000.0,
    }


def _attempts(tracker_for, first: list[dict], second: list[dict]) -> None:
    for records in (first, second):
        tracker = tracker_for()
        for record in records:
            tracker.record(record)
        tracker.close()


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve in a TensorBoard log folder, as tensorboard itself loads it (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_curves_continue_across_a_requeue(tmp_path: Path):
    def tracker():
        return Tracker(tmp_path, TrackingConfig(), wandb_id="x", name="demo/inter.en.s1", group="demo", config={})

    first = [
        {"event": "start", "step": 0},
        *(_step(s, 1.0 / s) for s in range(1, 5)),
        {"event": "eval", "step": 4, "metric": 55.0, "best_metric": 55.0, "dev": {"mnli:en": 55.0}},
    ]
    # killed after step 4, requeued, resumed from the step-2 checkpoint: steps 3-4 come again, with other values
    second = [{"event": "resume", "step": 2}, *(_step(s, 2.0 / s) for s in range(3, 6))]
    _attempts(tracker, first, second)
    curves = read_scalars(tmp_path / TENSORBOARD_DIR)
    assert [s for s, _ in curves["train/loss"]] == [1, 2, 3, 4, 5]  # float32 values in the event files:
    assert [v for _, v in curves["train/loss"]] == pytest.approx([1.0, 0.5, 2 / 3, 0.5, 0.4])  # attempt 2 from step 3
    assert [s for s, _ in curves["train/loss/mnli"]] == [1, 2, 3, 4, 5]
    assert curves["train/grad_norm"][0] == (1, 0.5) and curves["speed/tokens_per_s"][0] == (1, 1000.0)
    assert curves["dev/metric"] == []  # the evaluation at step 4 belonged to the purged part of attempt 1


ATTEMPTS = """
import sys
from pathlib import Path
from hpcxlt.config import TrackingConfig
from hpcxlt.train.tracking import Tracker
from tests.test_tracking import _step

folder, ident, attempt = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tracker = Tracker(folder, TrackingConfig(wandb=True, wandb_project="hpcxlt-test", wandb_mode="offline"),
                  wandb_id=ident, name="demo/inter.en.s1", group="demo", config={"seed": 1})
records = ([{"event": "start", "step": 0}, _step(1, 1.0), _step(2, 0.5)] if attempt == 1 else
           [{"event": "resume", "step": 2}, _step(3, 0.25), {"event": "eval", "step": 3, "metric": 60.0,
                                                            "dev": {"mnli:en": 60.0}}])
for record in records:
    tracker.record(record)
tracker.close()
"""


def test_a_wandb_offline_run_keeps_its_id_across_requeues(tmp_path: Path):
    """Each attempt is its own process, as each (re)started job is."""
    import subprocess

    pytest.importorskip("wandb", reason="wandb is in requirements.txt; CI installs it")
    ident = run_id(tmp_path / "run", "inter.en.s1")
    assert ident == run_id(tmp_path / "run", "inter.en.s1") != run_id(tmp_path / "other-run", "inter.en.s1")
    root = Path(__file__).resolve().parents[1]
    # a job's environment: nothing a test that trained in this process exported (rank variables)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["PYTHONPATH"] = str(root)
    for attempt in (1, 2):
        out = subprocess.run(
            [sys.executable, "-c", ATTEMPTS, str(tmp_path), ident, str(attempt)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted((tmp_path / WANDB_DIR / "wandb").glob(f"offline-run-*-{ident}"))
    assert len(runs) == 2  # one offline folder per attempt, one run id: `wandb sync` puts them together
    logged = [(run / f"run-{ident}.wandb").read_bytes() for run in runs]
    assert b"train/loss" in logged[0] and b"dev/metric" in logged[1] and b"hpcxlt-test" in logged[0]
    assert (tmp_path / TENSORBOARD_DIR).is_dir()  # TensorBoard is always written as well


def test_a_missing_wandb_package_stops_submit_before_anything_is_written(tmp_path: Path, monkeypatch, capsys):
    from hpcxlt.cli import main

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    require_packages(TrackingConfig())  # off: nothing to check
    with pytest.raises(TrackingError, match="`pip install wandb`"):
        require_packages(TrackingConfig(wandb=True))
    code = main(["submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(tmp_path / "run"), "-o", "tracking.wandb=true"])
    assert code == 2 and "tracking.wandb is on but the `wandb` package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
