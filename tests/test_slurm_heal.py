"""On the local Slurm cluster: jobs come back by themselves, without `hpcxlt resume`, when their training
process is killed (SIGKILL, as the OOM killer does) or their node goes DOWN, and finish from their
checkpoint."""

from __future__ import annotations

import json
import os
import signal

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
KEY = "target.none.xnli.s1"


def _start_training(tmp_path, assets, name: str) -> tuple[RunStore, str]:
    import yaml

    site = yaml.safe_load((ROOT / "slurm" / "sites" / "local.yaml").read_text())
    site["retry_backoff_s"] = 1
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(site))
    data = experiment(
        assets, name=name, arms=[{"name": "none"}], targets={"tasks": ["xnli"], "languages": {"xnli": ["en"]}}
    )
    data["target"].update(max_steps=600, save_every=50)  # long enough to be interrupted mid-way
    code, out = run_cli(
        "submit",
        str(write_config(tmp_path, data)),
        "--run-dir",
        str(tmp_path / "run"),
        "--site",
        str(site_path),
        "--no-aggregate",
    )
    assert code == 0, out
    store = RunStore(tmp_path / "run")
    wait_for(
        lambda: store.state(KEY)["state"] == "running" and list(store.checkpoints_dir(KEY).glob("step-*")),
        timeout=300,
        what=f"{KEY} to run and write its first checkpoint",
        interval=0.05,
    )
    return store, store.state(KEY)["job_id"]


def _events(store: RunStore) -> list[str]:
    return [json.loads(line).get("event") for line in store.train_log_path(KEY).read_text().splitlines()]


def _finished(store: RunStore) -> None:
    wait_for(
        lambda: all(store.is_done(c.key) for c in store.load_plan().cells),
        timeout=600,
        what="every cell to finish without `hpcxlt resume`",
        interval=2,
    )


def test_a_training_process_killed_like_the_oom_killer_retries_by_itself(tmp_path, assets, slurm_env):
    store, job_id = _start_training(tmp_path, assets, "slurm-heal-kill")
    os.kill(int(store.state(KEY)["pid"]), signal.SIGKILL)  # what the OOM killer does: no handler runs
    _finished(store)
    state = store.state(KEY)
    assert state["retries"] == 1 and state["attempts"] == 2 and state["job_id"] == job_id
    assert "resume" in _events(store)  # continued from its checkpoint
    assert state["reason"].startswith("process killed (signal 9); retry 1 of 2")
    log = (store.logs_dir / "slurm" / f"{job_id}_0_log.out").read_text()  # appended over the attempts
    assert "hpcxlt heal: job" in log and "requeued, retry 1 of 2" in log
