"""`hpcxlt doctor`: the preflight job it writes for a GPU site, and on the two-node local cluster: it passes
there, and fails naming the cause for a partition that does not exist and for an interface that does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcxlt.launch.site.doctor import judge, preflight_script
from hpcxlt.launch.site.preflight import environment
from hpcxlt.launch.site.profile import load_site
from tests.launch_assets import assets, experiment, subprocess_env, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import slurm_cluster, two_nodes  # noqa: F401

SITES = ROOT / "slurm" / "sites"


def test_the_preflight_job_asks_for_what_a_training_job_asks_for(tmp_path):
    site = load_site(SITES / "example-multinode-gpu.yaml")
    script = preflight_script(site, "intermediate", nodes=2, probe=tmp_path, timeout_s=120, paths=["/data/model"])
    lines = script.splitlines()
    for wanted in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --exclusive",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=xlt-lab",
        "#SBATCH --constraint=a100_80g",
        "#SBATCH --mem=480G",
        "module load gcc/12.2 cuda/12.4 openmpi/4.1",
        "export NCCL_SOCKET_IFNAME=ib0",
        "export HPCXLT_DIST_TIMEOUT_S=120",
    ):
        assert wanted in lines, f"{wanted!r} missing from:\n{script}"
    assert (
        lines[-1].startswith("srun ")
        and "-m hpcxlt.launch.site.preflight" in lines[-1]
        and "--path /data/model" in lines[-1]
    )
    # the site's own timeout comes first, the doctor's shorter one last (the one bash keeps)
    assert lines.index("export HPCXLT_DIST_TIMEOUT_S=900") < lines.index("export HPCXLT_DIST_TIMEOUT_S=120")


def test_a_rank_that_never_ran_and_other_package_versions_fail_on_their_node(tmp_path):
    site = load_site(SITES / "local-2node.yaml")
    login = environment()
    stale = json.loads(json.dumps(login))
    stale["packages"]["torch"] = "1.13.1"
    ok_steps = {
        "all_reduce": {"ok": True, "backend": "gloo", "total_s": 0.1},
        "shared_dir": {"ok": True},
        "paths": {"ok": True, "unreadable": {}},
    }
    reports = {0: {"rank": 0, "master": "n1:20001", "steps": {**ok_steps, "environment": {"ok": True, **stale}}}}
    checks = judge(
        site,
        "intermediate",
        nodes=["n1", "n2"],
        tasks_per_node=1,
        reports=reports,
        login=login,
        paths=[],
        job_state="FAILED",
        log=tmp_path / "job.out",
    )
    by = {(c.check, c.node): c for c in checks}
    assert by[("srun", "n2")].ok is False and "rank(s) [1] never started" in by[("srun", "n2")].detail
    assert by[("versions", "n1")].ok is False and "torch 1.13.1" in by[("versions", "n1")].detail
    assert "same venv" in by[("versions", "n1")].fix
    assert by[("all_reduce", "n1")].ok is True and by[("paths", "n1")].ok is None


def _doctor(site_path, *args: str, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpcxlt", "doctor", "--site", str(site_path), "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def doctor_runs(tmp_path_factory, assets, slurm_cluster, two_nodes):
    """Three doctors at once on the two-node cluster (their jobs fit side by side): the shipped two-node site
    with a config's folders, one naming a partition that does not exist, one naming an interface that does not."""
    tmp = tmp_path_factory.mktemp("doctor")
    config = write_config(tmp, experiment(assets, name="doctor"))
    site = yaml.safe_load((SITES / "local-2node.yaml").read_text())
    sites = {"good": SITES / "local-2node.yaml"}
    for name, change in (
        ("no-partition", {"defaults": {**site["defaults"], "partition": "gpu-a100"}}),
        ("no-interface", {"network_interface": "ib0"}),
    ):
        sites[name] = tmp / f"{name}.yaml"
        sites[name].write_text(yaml.safe_dump({**site, **change}))
    env = subprocess_env(**slurm_cluster)
    procs = {
        "good": _doctor(sites["good"], "--dir", str(tmp / "runs"), "--config", str(config), env=env),
        "no-partition": _doctor(sites["no-partition"], "--dir", str(tmp / "runs"), env=env),
        "no-interface": _doctor(sites["no-interface"], "--dir", str(tmp / "runs"), "--timeout", "15", env=env),
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, json.loads(out) if out.strip() else None, err)
    return results


@pytest.mark.slurm
@pytest.mark.slow
def test_doctor_passes_on_the_two_node_cluster(doctor_runs):
    code, found, err = doctor_runs["good"]
    assert code == 0 and found["ok"], (err[-2000:], found)
    checks = {(c["check"], c["node"]): c for c in found["checks"]}
    for node in ("n1", "n2"):
        for check in ("srun", "all_reduce", "shared_dir", "versions", "paths"):
            assert checks[(check, node)]["ok"] is True, checks[(check, node)]
    assert "gloo across 2 ranks" in checks[("all_reduce", "n1")]["detail"]
    assert found["nodes"] == 2 and found["log"] is None  # nothing left behind when everything passed


@pytest.mark.slurm
@pytest.mark.slow
def test_doctor_names_a_partition_that_does_not_exist(doctor_runs):
    code, found, _ = doctor_runs["no-partition"]
    assert code == 1 and not found["ok"]
    [check] = found["checks"]
    assert check["check"] == "submit" and check["ok"] is False
    assert "invalid partition" in check["detail"].lower()
    assert "partition 'gpu-a100' does not exist here" in check["fix"] and "sinfo -s" in check["fix"]


@pytest.mark.slurm
@pytest.mark.slow
def test_doctor_names_an_interface_the_nodes_do_not_have(doctor_runs):
    code, found, _ = doctor_runs["no-interface"]
    assert code == 1 and not found["ok"]
    failed = [c for c in found["checks"] if c["ok"] is False]
    assert {c["check"] for c in failed} == {"all_reduce"} and {c["node"] for c in failed} == {"n1", "n2"}
    assert all("network_interface 'ib0' does not exist" in c["fix"] for c in failed)
    assert found["log"] and found["log"].endswith("job.out")


def test_doctor_asks_for_what_the_submitted_jobs_ask_for():
    """One rendering of a stage's request: the doctor job's #SBATCH lines and the dry-run scripts of the
    example multi-node site name the same resources (the doctor sets its own name, log, nodes and time)."""
    import re

    from hpcxlt.launch.site.doctor import sbatch_directives
    from hpcxlt.launch.site.profile import SITE_STAGES, load_site
    from hpcxlt.launch.slurm.submission import sbatch_text, stage_parameters

    site = load_site(ROOT / "slurm" / "sites" / "example-multinode-gpu.yaml")
    own = {"job-name", "output", "nodes", "time"}
    for stage in SITE_STAGES:
        doctor = {line.split("=")[0] for line in sbatch_directives(site, stage, 1, 5, Path("/tmp/x"))}
        script = sbatch_text(stage_parameters(site, stage, "demo", "/tmp/run"), 1, Path("/tmp/run/logs"), None)
        submitted = {line.split("=")[0] for line in script.splitlines() if line.startswith("#SBATCH")}
        hpcxlt_own = {"#SBATCH --" + k for k in ("requeue", "kill-on-invalid-dep", "hold", "open-mode", "signal")}
        assert doctor - {f"#SBATCH --{k}" for k in own} == submitted - hpcxlt_own - {f"#SBATCH --{k}" for k in own}, (
            stage
        )
        assert any(re.match(r"#SBATCH --(gpus-per-node|partition)", line) for line in doctor)
