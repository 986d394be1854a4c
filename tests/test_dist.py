"""Rank detection from torchrun / srun / mpiexec environments, host lists, ports; real mpiexec and srun ranks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.train import dist
from hpcxlt.train.dist import DistEnv, DistError, detect, expand_hostlist, export_env, first_host, job_port
from tests.slurm_fixture import slurm_cluster  # noqa: F401  (fixture used by name)

REPO = Path(__file__).resolve().parents[1]
PROBE = "import json; from dataclasses import asdict; from hpcxlt.train.dist import detect; print(json.dumps(asdict(detect())))"


def test_single_process_defaults():
    env = detect({})
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.master_addr) == ("single", 0, 1, 0, "127.0.0.1")
    assert not env.is_distributed
    # without a process group the query helpers answer for one process
    assert dist.get_rank() == 0 and dist.get_world_size() == 1 and dist.is_main()
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.max_over_ranks(12) == 12
    dist.barrier()


def test_torchrun_variables_are_taken_as_given():
    env = detect(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "MASTER_ADDR": "node7",
            "MASTER_PORT": "29500",
            "SLURM_PROCID": "0",
            "SLURM_STEP_ID": "0",
            "SLURM_NTASKS": "1",
        }
    )
    assert env == DistEnv(
        launcher="torchrun", rank=3, world_size=4, local_rank=1, master_addr="node7", master_port=29500
    )


def test_srun_step_on_one_node_uses_loopback_and_a_job_port():
    base = {
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NUM_NODES": "1",
        "SLURM_STEP_NODELIST": "vm",
    }
    env = detect(base)
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.master_addr) == ("slurm", 1, 2, 1, "127.0.0.1")
    # every rank of the step derives the same port; another step or job gets another one
    assert env.master_port == detect({**base, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).master_port
    assert env.master_port != detect({**base, "SLURM_STEP_ID": "1"}).master_port
    assert env.master_port != detect({**base, "SLURM_JOB_ID": "4243"}).master_port


def test_srun_across_nodes_takes_the_first_host_of_the_step():
    env = detect(
        {
            "SLURM_PROCID": "5",
            "SLURM_LOCALID": "1",
            "SLURM_STEP_ID": "0",
            "SLURM_STEP_NUM_TASKS": "8",
            "SLURM_JOB_ID": "7",
            "SLURM_STEP_NUM_NODES": "4",
            "SLURM_STEP_NODELIST": "gpu[003-005,010]",
        }
    )
    assert (env.rank, env.world_size, env.master_addr) == (5, 8, "gpu003")


def test_the_site_suffix_names_the_fast_network_of_rank_0():
    base = {
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_NODELIST": "gpu[01-02]",
    }
    assert detect({**base, "HPCXLT_MASTER_ADDR_SUFFIX": "i"}).master_addr == "gpu01i"
    # an explicit MASTER_ADDR, or one node on loopback, is used as given
    assert detect({**base, "HPCXLT_MASTER_ADDR_SUFFIX": "i", "MASTER_ADDR": "10.0.0.5"}).master_addr == "10.0.0.5"
    one = {**base, "SLURM_STEP_NUM_NODES": "1", "HPCXLT_MASTER_ADDR_SUFFIX": "i"}
    assert detect(one).master_addr == "127.0.0.1"


def test_one_reader_serves_training_and_the_gather():
    from hpcxlt.launcher_env import launched_world, launcher_of

    mpich_in_slurm = {
        "PMI_RANK": "1",
        "PMI_SIZE": "2",
        "MPI_LOCALRANKID": "1",
        "MPI_LOCALNRANKS": "2",
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "0",
        "SLURM_LOCALID": "0",
    }
    srun_pmi2 = {
        "PMI_RANK": "3",
        "PMI_SIZE": "4",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_NODELIST": "n[1-2]",
        "SLURM_JOB_ID": "5",
    }
    for env, launcher, world in [
        ({}, "single", None),
        ({"RANK": "1", "WORLD_SIZE": "2"}, "torchrun", (1, 2)),
        (mpich_in_slurm, "mpi", (1, 2)),
        (srun_pmi2, "slurm", (3, 4)),
    ]:
        assert launcher_of(env) == launcher
        assert launched_world(env) == world
        if launcher != "single":
            assert (detect(env).rank, detect(env).world_size) == world


def test_dist_timeout_comes_from_the_site_or_torchs_default():
    from hpcxlt.launcher_env import dist_timeout_s

    assert dist_timeout_s({}) == 1800
    assert dist_timeout_s({"HPCXLT_DIST_TIMEOUT_S": "90"}) == 90
    with pytest.raises(DistError, match="HPCXLT_DIST_TIMEOUT_S='soon' is not an integer"):
        dist_timeout_s({"HPCXLT_DIST_TIMEOUT_S": "soon"})


def test_slurm_batch_step_without_srun_is_one_process():
    # sbatch --ntasks 2 runs the script once: SLURM_NTASKS=2 there, but no step id and no second process
    env = detect({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "9"})
    assert env.launcher == "single" and env.world_size == 1


def test_mpich_and_open_mpi_variables():
    mpich = detect({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"})
    assert (mpich.launcher, mpich.rank, mpich.world_size, mpich.local_rank, mpich.master_addr) == (
        "mpi",
        1,
        2,
        1,
        "127.0.0.1",
    )
    ompi = detect(
        {
            "OMPI_COMM_WORLD_RANK": "2",
            "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_LOCAL_RANK": "0",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
            "SLURM_JOB_NODELIST": "n[1-2]",
            "PMIX_NAMESPACE": "ns1",
        }
    )
    assert (ompi.rank, ompi.world_size, ompi.master_addr, ompi.master_port) == (2, 4, "n1", job_port("mpi", "ns1"))
    # mpiexec inside an allocation: the batch step's SLURM_PROCID=0 must not win over the MPI rank
    inside = detect(
        {
            "PMI_RANK": "1",
            "PMI_SIZE": "2",
            "MPI_LOCALRANKID": "1",
            "MPI_LOCALNRANKS": "2",
            "SLURM_PROCID": "0",
            "SLURM_NTASKS": "2",
            "SLURM_JOB_ID": "3",
        }
    )
    assert inside.rank == 1


def test_multi_node_mpi_without_a_master_is_a_clear_error():
    with pytest.raises(DistError, match="MASTER_ADDR"):
        detect({"PMI_RANK": "0", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2"})


def test_inconsistent_ranks_are_refused():
    with pytest.raises(DistError, match="rank 4 is not in"):
        detect({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(DistError, match="not an integer"):
        detect({"RANK": "one", "WORLD_SIZE": "4"})


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("vm", ["vm"]),
        ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
        ("a-b[8-10]", ["a-b8", "a-b9", "a-b10"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ],
)
def test_expand_hostlist(nodelist, hosts):
    assert expand_hostlist(nodelist) == hosts
    assert first_host(nodelist) == hosts[0]


def test_job_port_is_stable_and_in_range():
    assert job_port("slurm", 1, 0) == job_port("slurm", 1, 0)
    ports = {job_port("slurm", job, 0) for job in range(200)}
    assert all(20000 <= p < 40000 for p in ports) and len(ports) > 190


def test_export_env_sets_the_rendezvous_variables():
    target: dict[str, str] = {}
    export_env(
        DistEnv(launcher="slurm", rank=1, world_size=2, local_rank=1, master_addr="127.0.0.1", master_port=23456),
        target,
    )
    assert target == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "23456",
    }


def _ranks(cmd: list[str], env: dict[str, str]) -> list[dict]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    # the ranks print concurrently: mpiexec may forward two lines as one ('{...}{...}'), so take every object
    objects = re.findall(r"\{[^{}]*\}", out.stdout)
    return sorted((json.loads(text) for text in objects), key=lambda r: r["rank"])


def _clean_env(base: dict[str, str] | None = None) -> dict[str, str]:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    return {**{k: v for k, v in (base or os.environ).items() if k not in drop}, "PYTHONPATH": str(REPO)}


@pytest.mark.mpi
def test_real_mpiexec_ranks():
    mpiexec = Path(sys.executable).parent / "mpiexec"
    ranks = _ranks([str(mpiexec), "-n", "2", sys.executable, "-c", PROBE], _clean_env())
    assert [(r["launcher"], r["rank"], r["world_size"], r["local_rank"]) for r in ranks] == [
        ("mpi", 0, 2, 0),
        ("mpi", 1, 2, 1),
    ]
    assert ranks[0]["master_port"] == ranks[1]["master_port"] and ranks[0]["master_addr"] == "127.0.0.1"


@pytest.mark.slurm
def test_real_srun_ranks(slurm_cluster):  # the fixture fails under CI without the cluster, skips elsewhere
    ranks = _ranks(["srun", "--ntasks", "2", "--time", "2", sys.executable, "-c", PROBE], _clean_env(slurm_cluster))
    assert [(r["launcher"], r["rank"], r["world_size"]) for r in ranks] == [("slurm", 0, 2), ("slurm", 1, 2)]
    assert ranks[0]["master_port"] == ranks[1]["master_port"] and ranks[0]["master_addr"] == "127.0.0.1"
