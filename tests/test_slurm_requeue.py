"""On the local Slurm cluster: a training job that reaches its time limit is requeued through submitit's
SIGUSR2 path, resumes from its checkpoint and ends with the same weights and scores as an uninterrupted run;
so does a job preempted on a partition that cancels preempted jobs (PreemptMode=CANCEL). (A multi-rank job preempted by a job in a higher partition, requeued as one job and resumed to bitwise-equal
weights, is tested on the two compute nodes: tests/test_slurm_multinode.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, run_cli, slurm_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local.yaml")
KEY = "target.none.xnli.s1"
# the environment local.yaml's setup gives the jobs, so the reference run computes exactly alike
JOB_ENV = {
    "OMP_NUM_THREADS": "1",
    "DS_ACCELERATOR": "cpu",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _without_rendezvous(environ) -> dict[str, str]:
    """This pytest process may have trained in-process (other test modules) and so holds a gloo store on
    the MASTER_PORT it exported; a child inheriting that port could not listen on it."""
    from hpcxlt.launch.slurm.submission import RENDEZVOUS_VARS

    return {k: v for k, v in environ.items() if k not in RENDEZVOUS_VARS}


def _config(tmp_path, assets, *, max_steps: int = 600, save_every: int = 50):
    data = experiment(
        assets,
        name="slurm-requeue",
        arms=[{"name": "none"}],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
    )
    data["target"].update(max_steps=max_steps, save_every=save_every)  # long enough to be interrupted mid-way
    return write_config(tmp_path, data)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, assets):
    """The same grid run locally without interruption (a subprocess, so it overlaps the Slurm tests)."""
    tmp = tmp_path_factory.mktemp("reference")
    run_dir = tmp / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpcxlt",
            "submit",
            str(_config(tmp, assets)),
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ],
        env={**_without_rendezvous(os.environ), **JOB_ENV, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def finished() -> RunStore:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        return RunStore(run_dir)

    yield finished
    if proc.poll() is None:
        proc.kill()


def _same_weights_and_scores(store: RunStore, ref: RunStore) -> None:
    from safetensors.torch import load_file

    mine = load_file(store.model_dir(KEY) / "model.safetensors")
    theirs = load_file(ref.model_dir(KEY) / "model.safetensors")
    assert mine.keys() == theirs.keys()
    assert all((mine[name] == theirs[name]).all() for name in mine), "final weights differ from the uninterrupted run"
    plan = store.load_plan()
    for lang in ("en", "de"):
        [rec] = [r for r in store.cell_records(f"eval.none.xnli.s1.{lang}", plan) if r["split"] == "test"]
        [ref_rec] = [r for r in ref.cell_records(f"eval.none.xnli.s1.{lang}", plan) if r["split"] == "test"]
        assert rec["metrics"] == ref_rec["metrics"] and rec["score"] == ref_rec["score"]


def _submit_and_wait_for_training(tmp_path, assets) -> tuple[RunStore, str]:
    run_dir = tmp_path / "run"
    code, out = run_cli(
        "submit", str(_config(tmp_path, assets)), "--run-dir", str(run_dir), "--site", SITE, "--no-aggregate"
    )
    assert code == 0, out
    store = RunStore(run_dir)
    wait_for(
        lambda: store.state(KEY)["state"] == "running" and list(store.checkpoints_dir(KEY).glob("step-*")),
        timeout=300,
        what=f"{KEY} to run and write its first checkpoint",
        interval=0.2,
    )
    return store, store.state(KEY)["job_id"]


def _events(store: RunStore) -> list[str]:
    lines = store.train_log_path(KEY).read_text().splitlines()
    return [json.loads(line)["event"] for line in lines if '"event"' in line]


def _finish(store: RunStore) -> None:
    wait_for(
        lambda: all(store.is_done(c.key) for c in store.load_plan().cells),
        timeout=400,
        what="every cell to finish",
        interval=2,
    )


def _elapsed_minutes(job_id: str) -> int:
    """Whole minutes the running job has used (squeue's %M: [days-][hours:]minutes:seconds)."""
    used = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%M"], capture_output=True, text=True, check=True
    ).stdout.strip()
    days, _, clock = used.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes = (parts[0], parts[1]) if len(parts) == 3 else (0, parts[0])
    return (int(days or 0) * 24 + hours) * 60 + minutes


def test_a_training_job_at_its_time_limit_requeues_and_finishes(tmp_path, assets, slurm_env, reference):
    """Independent of the machine's speed: the job starts with a limit far beyond its start-up; once it
    trains (a checkpoint exists) it is frozen with SIGSTOP, so it cannot finish however fast it is, and
    its limit is cut to 1-2 minutes ahead. Slurm's time-limit warning (SIGCONT + SIGUSR2, up to its
    30-s sweep early) then reaches it mid-training."""
    import yaml

    site = yaml.safe_load(open(SITE))
    site["stages"]["target"] = {"time": "10"}
    # the warning comes 90 s before the limit: once the limit is cut to 60-120 s ahead it is due at once
    # (Slurm's sweep: within 30 s), and the job still has 60 s or more to checkpoint and requeue
    site["signal_delay_s"] = 90
    site_path = tmp_path / "short.yaml"
    site_path.write_text(yaml.safe_dump(site))
    run_dir = tmp_path / "run"
    code, out = run_cli(
        "submit", str(_config(tmp_path, assets)), "--run-dir", str(run_dir), "--site", str(site_path), "--no-aggregate"
    )
    assert code == 0, out
    store = RunStore(run_dir)
    job_id = store.state(KEY)["job_id"]
    assert "#SBATCH --time=10\n" in (store.logs_dir / "slurm" / f"{job_id}_submission.sh").read_text()
    wait_for(
        lambda: store.state(KEY)["state"] == "running" and list(store.checkpoints_dir(KEY).glob("step-*")),
        timeout=300,
        what=f"{KEY} to run and write its first checkpoint",
        interval=0.02,
    )
    os.kill(int(store.state(KEY)["pid"]), signal.SIGSTOP)
    assert not store.is_done(KEY), "training finished before it could be frozen: raise max_steps"
    limit = _elapsed_minutes(job_id) + 2  # 60-120 s left: the warning (signal_delay_s 90) is due at once
    subprocess.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={limit}"], check=True)
    wait_for(
        lambda: store.state(KEY).get("requeues", 0) >= 1,
        timeout=180,
        what="the job to checkpoint and requeue itself at its time limit",
        interval=0.2,
    )
    # the requeued job gets an hour (else the next attempt would meet the same limit)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=60"], check=True)
    _finish(store)
    state = store.state(KEY)
    assert state["requeues"] == 1 and state["attempts"] == 2 and state["job_id"] == job_id
    events = _events(store)
    assert events.index("preempted") < events.index("resume")  # stopped at a step boundary mid-training
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-D", "-j", job_id, "-o", "JobID,State"], capture_output=True, text=True, check=True
    ).stdout
    assert "REQUEUED" in acct and "COMPLETED" in acct  # one accounting record per attempt
    _same_weights_and_scores(store, reference())


def _signal_reached(pid: int, signum: int) -> bool:
    """`signum` waits undelivered at the frozen process, or Slurm woke it (SIGCONT) and it went on or exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    except FileNotFoundError:
        return True
    if not fields.get("State", "").strip().startswith(("T", "t")):
        return True
    return any(int(fields[name].strip(), 16) & (1 << (signum - 1)) for name in ("SigPnd", "ShdPnd"))


def test_a_job_its_site_cancels_when_preempted_requeues_itself_and_finishes(tmp_path, assets, slurm_env, reference):
    """PreemptMode=CANCEL (partition low-cancel): at preemption Slurm sends the job's --signal (USR2; the
    local cluster sets preempt_send_user_signal, as sites that cancel should) and cancels it after GraceTime.
    The job checkpoints and requeues itself inside the grace time, which turns the cancellation into a
    requeue: it resumes and finishes without `hpcxlt resume`, to the weights of an uninterrupted run.
    Independent of the machine's speed: the job is frozen (SIGSTOP) until the preemption signal reached it."""
    import yaml

    from tests.slurm_fixture import frozen

    site = yaml.safe_load(open(SITE))
    site["defaults"]["partition"] = "low-cancel"
    site_path = tmp_path / "cancel.yaml"
    site_path.write_text(yaml.safe_dump(site))
    code, out = run_cli(
        "submit",
        str(_config(tmp_path, assets)),
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
        interval=0.02,
    )
    job_id = store.state(KEY)["job_id"]
    with frozen(job_id, 1) as pids:
        assert not store.is_done(KEY), "training finished before it could be frozen: raise max_steps"
        # a job in `high` needs both CPUs: Slurm preempts the training job in low-cancel
        high = subprocess.run(
            ["sbatch", "--parsable", "-p", "high", "--ntasks-per-node", "2", "-o", "/dev/null", "--wrap", "sleep 2"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_for(
            lambda: all(_signal_reached(pid, signal.SIGUSR2) for pid in pids),
            timeout=120,
            what="Slurm's preemption signal (USR2) to reach the job",
            interval=0.1,
        )
    _finish(store)
    state = store.state(KEY)
    assert state["requeues"] == 1 and state["attempts"] == 2 and state["job_id"] == job_id  # requeued, not cancelled
    events = _events(store)
    assert events.index("preempted") < events.index("resume")
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-D", "-j", f"{job_id},{high}", "-o", "JobID,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{job_id}|REQUEUED" in acct and f"{job_id}|COMPLETED" in acct and "CANCELLED" not in acct, acct
    assert f"{high}|COMPLETED" in acct
    _same_weights_and_scores(store, reference())
