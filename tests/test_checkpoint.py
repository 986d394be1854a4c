"""Checkpoint folders: completeness manifest, lookup that skips broken ones, pruning, RNG capture; a real
DeepSpeed run whose truncated latest checkpoint is skipped and which still ends with the same weights."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcxlt.io import write_json_atomic
from hpcxlt.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]


def fake_checkpoint(root: Path, step: int, *, payload: bytes = b"x" * 100, manifest: bool = True) -> Path:
    """A folder laid out like a saved checkpoint (the lookup only reads files and sizes)."""
    folder = root / f"step-{step}"
    folder.mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(payload)
    write_json_atomic(folder / ckpt.STATE_FILE, {"step": step})
    if manifest:
        files = {p.name: p.stat().st_size for p in folder.iterdir()}
        write_json_atomic(folder / ckpt.MANIFEST, {"step": step, "files": files})
    return folder


def test_latest_is_the_highest_complete_step(tmp_path: Path):
    for step in (2, 10, 4):
        fake_checkpoint(tmp_path, step)
    (tmp_path / ".tmp-step-12").mkdir()  # a save that was killed: never a candidate
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-10"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-2", "step-4", "step-10"]
    assert ckpt.latest_checkpoint(tmp_path / "missing") is None


def test_truncated_latest_is_skipped_with_a_clear_log_line(tmp_path: Path, caplog):
    fake_checkpoint(tmp_path, 4)
    broken = fake_checkpoint(tmp_path, 6)
    with open(broken / "mp_rank_00_model_states.pt", "r+b") as handle:
        handle.truncate(37)
    with caplog.at_level(logging.WARNING, logger="hpcxlt.train.checkpoint"):
        assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-4"
    assert "step-6 is unusable: file mp_rank_00_model_states.pt has 37 bytes, the manifest says 100" in caplog.text
    assert "skipping it and trying the previous one" in caplog.text


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda f: (f / ckpt.MANIFEST).unlink(), "no complete.json"),
        (lambda f: (f / ckpt.MANIFEST).write_text("{not json"), "unreadable complete.json"),
        (lambda f: (f / "mp_rank_00_model_states.pt").unlink(), "missing file mp_rank_00_model_states.pt"),
    ],
)
def test_problem_names_what_is_wrong(tmp_path: Path, damage, reason):
    folder = fake_checkpoint(tmp_path, 1)
    assert ckpt.problem(folder) is None
    damage(folder)
    assert reason in ckpt.problem(folder)


def test_prune_keeps_the_newest_and_the_best(tmp_path: Path):
    for step in (1, 2, 3, 4, 5):
        fake_checkpoint(tmp_path, step)
    removed = ckpt.prune(tmp_path, keep_last=2, keep={2})
    assert sorted(p.name for p in removed) == ["step-1", "step-3"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-2", "step-4", "step-5"]


def test_step_of_refuses_other_names():
    assert ckpt.step_of("/x/step-120") == 120
    with pytest.raises(ValueError, match="step-<N>"):
        ckpt.step_of("/x/global_step120")


def test_rng_capture_restores_python_numpy_torch():
    ckpt.seed_everything(11)
    state = ckpt.capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


@pytest.mark.deepspeed
@pytest.mark.slow
def test_real_run_skips_a_truncated_latest_checkpoint_and_ends_identically(tmp_path: Path):
    """One process, ZeRO-2: truncate the newest checkpoint's optimizer shard, rerun, get the same weights."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        str(REPO / "tests" / "ds_worker.py"),
        "--out",
        str(tmp_path),
        "--stage",
        "2",
        "--steps",
        "6",
        "--save-every",
        "2",
        "--keep-last",
        "3",
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run-2"
    reference = torch.load(run / "final.pt")
    reference_log = (run / "train_log.jsonl").read_text()
    shard = next((run / "checkpoints" / "step-6").glob("*optim_states.pt"))
    with open(shard, "r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    (run / "final.pt").unlink()

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"checkpoint {run / 'checkpoints' / 'step-6'} is unusable: file {shard.name} has" in second.stderr
    assert json.loads((run / "result.json").read_text())["resumed_from"] == str(run / "checkpoints" / "step-4")
    final = torch.load(run / "final.pt")
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    losses = lambda text: [json.loads(l)["loss"] for l in text.splitlines() if '"loss"' in l]  # noqa: E731
    assert losses((run / "train_log.jsonl").read_text()) == losses(reference_log)
    # the rewritten step-6 is whole again
    assert ckpt.problem(run / "checkpoints" / "step-6") is None
    shutil.rmtree(run / "checkpoints")


def test_a_step_saved_again_is_never_without_a_complete_checkpoint(tmp_path: Path):
    """Saving an existing step moves the old copy aside, renames the new one in, then deletes the old;
    a job killed between the two renames leaves `.old-step-N`, which the lookup puts back."""
    fake_checkpoint(tmp_path, 4)
    (tmp_path / "step-4").rename(tmp_path / f"{ckpt.OLD_PREFIX}step-4")
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-4"
    assert not (tmp_path / f"{ckpt.OLD_PREFIX}step-4").exists()
    # the new copy made it: the old one is ignored (and removed by the next save of that step)
    (tmp_path / "step-4").rename(tmp_path / f"{ckpt.OLD_PREFIX}step-4")
    fake_checkpoint(tmp_path, 4, payload=b"y" * 50)
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-4"
    assert (tmp_path / "step-4" / "mp_rank_00_model_states.pt").read_bytes() == b"y" * 50


def test_a_stop_signal_skips_the_dev_evaluation_of_its_step(tmp_path: Path):
    """SIGUSR2 during step 4, an evaluation step: the checkpoint is saved at once, no dev evaluation runs
    inside the signal's grace time."""
    from hpcxlt.train.preemption import EXIT_PREEMPTED

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        str(REPO / "tests" / "ds_worker.py"),
        "--out",
        str(tmp_path),
        "--stage",
        "0",
        "--steps",
        "8",
        "--save-every",
        "100",
        "--eval-every",
        "2",
        "--signal-at",
        "4",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "run-0" / "train_log.jsonl").read_text().splitlines()]
    evals = [e["step"] for e in events if e.get("event") == "eval"]
    stops = [e["step"] for e in events if e.get("event") == "preempted"]
    assert evals == [2] and stops == [4]
    assert ckpt.problem(tmp_path / "run-0" / "checkpoints" / "step-4") is None
