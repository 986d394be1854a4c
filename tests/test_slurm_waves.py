"""On the local Slurm cluster with a real MaxSubmitJobs limit (sacctmgr): a grid larger than the limit is
submitted in waves by feeder jobs, never holds more jobs in the queue than the site allows, and completes
with no process left on the login node."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
LIMIT = 10


@pytest.fixture
def submit_limit(slurm_env):
    """MaxSubmitJobs=LIMIT on root's association, as a site's QOS or account limit would be."""

    def set_limit(value: int) -> None:
        subprocess.run(
            ["sacctmgr", "-i", "modify", "user", "where", "name=root", "set", f"MaxSubmitJobs={value}"],
            check=True,
            capture_output=True,
        )

    set_limit(LIMIT)
    try:
        yield LIMIT
    finally:
        set_limit(-1)


def test_a_grid_larger_than_the_submit_limit_completes_in_waves(tmp_path, assets, slurm_env, submit_limit):
    import yaml

    # really enforced: one array larger than the limit is refused by sbatch
    refused = subprocess.run(
        ["sbatch", f"--array=0-{LIMIT}", "--wrap", "true", "-o", "/dev/null"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "limit" in refused.stderr.lower(), refused.stderr
    site = yaml.safe_load((ROOT / "slurm" / "sites" / "local.yaml").read_text())
    site["max_queued_jobs"] = LIMIT
    site_path = tmp_path / "limited.yaml"
    site_path.write_text(yaml.safe_dump(site))
    data = experiment(assets, name="slurm-waves", seeds=[1, 2])  # 14 jobs + the aggregation
    run_dir = tmp_path / "run"
    store_path = write_config(tmp_path, data)

    most, stop = [0], threading.Event()

    def sample() -> None:  # the queue, every second, whatever state its jobs are in
        while not stop.is_set():
            out = subprocess.run(["squeue", "-h", "-r", "-u", "root", "-o", "%i"], capture_output=True, text=True)
            if out.returncode == 0:
                most[0] = max(most[0], len(out.stdout.split()))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        code, out = run_cli("submit", str(store_path), "--run-dir", str(run_dir), "--site", str(site_path))
        assert code == 0, out
        assert "more job(s) go in later waves" in out and "feeder job" in out
        store = RunStore(run_dir)
        wait_for(
            lambda: all(store.is_done(c.key) for c in store.load_plan().cells),
            timeout=900,
            what="every cell to finish, wave after wave",
            interval=3,
        )
        from hpcxlt.launch.record import aggregate_state

        wait_for(lambda: aggregate_state(store).get("state") == "done", timeout=300, what="the aggregation job")
    finally:
        stop.set()
        sampler.join()
    assert most[0] <= LIMIT, f"the queue held {most[0]} jobs; the limit is {LIMIT}"
    code, text = run_cli("status", str(run_dir), "--json")
    status = json.loads(text)
    assert status["done"] and status["waves"]["submitted"] >= 2
    assert (run_dir / "tables").is_dir()
