"""Real MPI: `mpiexec -n 3 hpcxlt aggregate` splits the records over three ranks and prints exactly
the JSON of a single-process run, bad records and JSON-lines shards included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.launch.slurm.submission import RENDEZVOUS_VARS
from tests.aggregate_fixture import make_run, record, record_path
from tests.slurm_fixture import slurm_cluster  # noqa: F401  (fixture used by name)

pytestmark = pytest.mark.mpi

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _hpcxlt(*args: str, ranks: int | None = None) -> subprocess.CompletedProcess:
    # no launcher variables of this process: in-process training tests leave torch's RANK/WORLD_SIZE
    # behind, which would make every mpiexec rank think it is a torchrun world of its own
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PMI_", "OMPI_", "SLURM_")) and k not in RENDEZVOUS_VARS
    }
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "hpcxlt", "aggregate", *args]
    if ranks is not None:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture
def run_dir(tmp_path):
    if not MPIEXEC.exists():
        pytest.fail(f"{MPIEXEC} is missing: the mpich wheel (mpi4py's dependency) provides it")
    arms = [
        {"name": "none"},
        {"name": "en", "tasks": ["mnli"]},
        {"name": "en_lr", "tasks": ["mnli", "sib200"], "compare_to": "en"},
    ]
    langs = {"xnli": ["en", "de", "sw", "ur"], "xquad": ["en", "de", "ar"], "panx": ["en", "sw", "yo"]}
    store = make_run(
        tmp_path / "run",
        arms=arms,
        targets=langs,
        seeds=[1, 2, 3],
        score=lambda a, t, s, l, sp: (
            60
            + 3 * arms.index(next(x for x in arms if x["name"] == a))
            + s * 0.7
            + len(l) * 0.1
            + (l == "sw") * (a == "en_lr") * 2
        ),
    )
    # a truncated record, and a JSON-lines shard holding one more record and one bad line
    bad = record_path(store, "eval.en.panx.s2.yo", "test")
    bad.write_text(bad.read_text()[:30])
    extra = record("en", "panx", 2, "yo", "test", 64.0)
    (store.results_dir / "late.jsonl").write_text(
        json.dumps({**extra, "seed": 9, "key": "eval.en.panx.s9.yo"}) + '\n{"key": 1}\n'
    )
    return store.root


def test_three_ranks_print_exactly_the_single_rank_json(run_dir):
    one = _hpcxlt(str(run_dir), "--json", "--no-plots")
    assert one.returncode == 0, one.stderr
    three = _hpcxlt(str(run_dir), "--json", "--no-plots", ranks=3)
    assert three.returncode == 0, three.stderr
    assert three.stdout == one.stdout
    data = json.loads(one.stdout)
    assert data["records"]["bad"] == 2 and data["records"]["unplanned"] == 1
    assert [m["key"] for m in data["missing"]] == ["eval.en.panx.s2.yo"]
    assert data["tables"]["task_scores"]["partial"]


def test_the_ranks_really_share_the_work(run_dir):
    out = _hpcxlt(str(run_dir), "--no-plots", ranks=3)
    assert out.returncode == 0, out.stderr
    assert "(3 MPI ranks: 2 reading" in out.stdout
    # only rank 0 prints: the tables appear once
    assert out.stdout.count("Task scores per arm") == 1


def test_a_setup_error_stops_every_rank(tmp_path):
    out = _hpcxlt(str(tmp_path / "nowhere"), ranks=3)
    assert out.returncode == 2
    assert out.stderr.count("no such run directory") == 1


@pytest.mark.slurm
def test_srun_ranks_give_the_single_rank_json_and_plain_srun_falls_back(run_dir, slurm_cluster):
    one = _hpcxlt(str(run_dir), "--json", "--no-plots")
    env = {**slurm_cluster, "PYTHONPATH": str(REPO)}
    base = ["srun", "-n", "2", "-p", "high", "--time", "5"]
    cmd = [sys.executable, "-m", "hpcxlt", "aggregate", str(run_dir), "--json", "--no-plots"]
    # pmi2: MPICH (mpi4py's wheel) talks to srun, so the two tasks form one MPI world
    with_mpi = subprocess.run([*base, "--mpi=pmi2", *cmd], env=env, capture_output=True, text=True, timeout=180)
    assert with_mpi.returncode == 0, with_mpi.stderr
    assert with_mpi.stdout == one.stdout
    # no MPI plugin: each task would be a world of one; task 0 does everything, task 1 nothing
    plain = subprocess.run([*base, "--mpi=none", *cmd], env=env, capture_output=True, text=True, timeout=180)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == one.stdout
    assert plain.stderr.count("MPI sees a world of 1") == 1
