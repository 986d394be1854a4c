"""`hpcxlt init-site`: a profile from what the cluster says, that loads and submits; on a GPU cluster (a
hand-made sinfo answer) training goes where the GPUs are."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from hpcxlt.launch.site.discover import Cluster, Partition, profile_text
from hpcxlt.launch.site.profile import load_site, parse_site
from tests.launch_assets import run_cli
from tests.paths import CONFIGS
from tests.slurm_fixture import slurm_cluster  # noqa: F401


@pytest.mark.slurm
def test_on_the_local_cluster_the_profile_names_its_partitions_and_accounts_and_submits(
    slurm_cluster, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])  # what the command's sinfo and sacctmgr read
    out = tmp_path / "here.yaml"
    code, text = run_cli("init-site", str(out))
    assert code == 0 and out.is_file()
    site = load_site(out)
    partitions = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True, env=slurm_cluster
    ).stdout.split()
    default = next(p.rstrip("*") for p in partitions if p.endswith("*"))
    assert site.stage("aggregate").partition == default
    written = out.read_text()
    assert all(p.rstrip("*") in written for p in partitions)  # every partition is listed for the reader
    accounts = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "format=Account"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert site.stage("eval").account in accounts
    code, _ = run_cli(
        "submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(tmp_path / "run"), "--site", str(out), "--dry-run"
    )
    assert code == 0
    code, _ = run_cli("init-site", str(out))
    assert code == 2  # an existing file is kept unless --force


def test_on_a_gpu_cluster_training_goes_where_the_gpus_are():
    cluster = Cluster(
        partitions=[
            Partition(
                name="cpu",
                default=True,
                gpus_per_node=0,
                gpu_type=None,
                cpus_per_node=64,
                mem_mb=256000,
                time_limit="2-00:00:00",
                nodes=100,
            ),
            Partition(
                name="gpu",
                default=False,
                gpus_per_node=4,
                gpu_type="a100",
                cpus_per_node=32,
                mem_mb=512000,
                time_limit="2-00:00:00",
                nodes=40,
            ),
        ],
        accounts=["xlt-lab", "other"],
        qos=["normal", "long"],
    )
    site = parse_site(yaml.safe_load(profile_text(cluster, "big")), "big.yaml")
    train = site.stage("target")
    assert (train.partition, train.gpus(), train.ntasks_per_node("target"), train.cpus_per_task) == ("gpu", 4, 4, 8)
    assert site.stage("aggregate").partition == "cpu" and site.stage("eval").gpus() == 1
    assert site.stage("intermediate").account == "xlt-lab" and site.stage("intermediate").qos == "normal"
