"""Slurm site profiles: the shipped ones load, and values sbatch would reject fail before submission."""

import pytest
import yaml

from hpcxlt.launch.site.profile import SiteError, load_site, parse_site, parse_time_minutes
from tests.paths import ROOT

SITES = ROOT / "slurm" / "sites"


def _site(tmp_path, data, name="site.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


BASE = {"name": "t", "defaults": {"partition": "gpu", "time": "02:00:00", "gpus_per_node": 4, "cpus_per_task": 8}}


def with_(overrides: dict, stage: str | None = None) -> dict:
    data = {**BASE, "defaults": dict(BASE["defaults"])}
    if stage is None:
        data["defaults"].update(overrides)
    else:
        data["stages"] = {stage: overrides}
    return data


def test_shipped_profiles_load_with_defaults_applied_per_stage():
    site = load_site(SITES / "example-multinode-gpu.yaml")
    inter, target, ev, agg = (site.stage(s) for s in ("intermediate", "target", "eval", "aggregate"))
    assert (inter.nodes, inter.ntasks_per_node("intermediate"), inter.gpus(), inter.time_minutes()) == (
        2,
        4,
        4,
        24 * 60,
    )
    assert inter.exclusive and not target.exclusive
    assert (target.nodes, target.partition, target.account, target.mem) == (1, "gpu", "xlt-lab", "480G")
    assert (ev.gpus(), ev.ntasks_per_node("eval"), ev.mem) == (1, 1, "120G")
    assert (agg.partition, agg.constraint, agg.gpus(), agg.ntasks_per_node("aggregate")) == ("cpu", None, 0, 8)
    assert site.array_throttle == 64 and site.max_requeues == 5 and site.signal_delay_s == 300
    local = load_site(SITES / "local.yaml")
    assert local.stage("target").partition == "low" and local.max_array_size == 10001
    # >= 60 minutes: submitit treats a signal as a time-out after min(0.8 T, T - 10 min)
    assert local.stage("intermediate").time_minutes() >= 60


@pytest.mark.parametrize(
    "text,minutes",
    [
        ("30", 30),
        ("30:30", 31),
        ("04:00:00", 240),
        ("1-0", 1440),
        ("1-12:30", 2190),
        ("2-00:00:01", 2881),
    ],
)
def test_time_formats_sbatch_accepts(text, minutes):
    assert parse_time_minutes(text) == minutes


@pytest.mark.parametrize(
    "data,match",
    [
        (with_({"time": "4h"}), r"defaults.time: '4h' is not a Slurm time"),
        (with_({"time": "01:75:00"}), r"defaults.time: 'm' field 75 is out of range"),
        (with_({"time": "00:00:00"}), r"time: '00:00:00' is zero"),
        (with_({"mem": "64GiB"}), r"defaults.mem: '64GiB' is not an sbatch memory size"),
        (with_({"mem": "-1G"}), r"mem: '-1G' is not an sbatch memory size"),
        (with_({"nodes": 0}), r"nodes: must be >= 1, got 0"),
        (with_({"gpus_per_node": -2}), r"gpus_per_node: must be >= 0, got -2"),
        (with_({"cpus_per_task": 0}), r"cpus_per_task: must be >= 1"),
        (with_({"partition": "gpu a100"}), r"partition: 'gpu a100' is not a partition name"),
        (with_({"partition": "gpu\nhostname"}), r"defaults.partition: must be one line"),
        (
            with_({"account": "lab-a,lab-b"}),
            r"defaults.account: 'lab-a,lab-b' is not a valid Slurm account name \(one name",
        ),
        (with_({"gres": "gpu:a100:4"}), r"gres: names GPUs and gpus_per_node is set too"),
        (with_({"gres": "gpu::"}), r"gres: 'gpu::' is not name\[:type\]\[:count\]"),
        (
            with_({"tasks_per_node": 2}, "target"),
            r"stages.target.tasks_per_node: training runs one process per GPU: expected 4",
        ),
        (with_({"nodes": 2}, "eval"), r"stages.eval.nodes: an evaluation job is one process on one node"),
        (with_({"nodes": 2}, "aggregate"), r"stages.aggregate.nodes: the aggregation runs its MPI ranks on one node"),
        (with_({"sbatch_extra": {"array": "0-3"}}), r"sbatch_extra.array: is set by hpcxlt itself"),
        (
            {**BASE, "array_throttle": 2000, "max_array_size": 1001},
            r"array_throttle: 2000 is larger than max_array_size 1001",
        ),
        ({**BASE, "array_throttle": 0}, r"array_throttle: must be >= 1"),
        ({**BASE, "max_requeues": -1}, r"max_requeues: must be >= 0"),
        ({**BASE, "max_queued_jobs": 1}, r"max_queued_jobs: must be >= 2 \(a wave needs a job and its feeder\)"),
        ({**BASE, "max_running": 0}, r"max_running: must be >= 1"),
        ({**BASE, "max_array_size": 0}, r"max_array_size: must be in \[1, 4000001\]"),
        ({**BASE, "signal_delay_s": 7200}, r"signal_delay_s: 7200 s is not shorter than the intermediate time limit"),
        ({**BASE, "mpi_launcher": "mpirun"}, r"mpi_launcher: 'mpirun' must contain \{ntasks\}"),
        (
            {**BASE, "stages": {"training": {}}},
            r"stages.training: unknown stage; allowed: intermediate, target, eval, aggregate",
        ),
        ({"defaults": {}}, r"name: required key is missing"),
        ({**BASE, "dist_timeout_s": 0}, r"dist_timeout_s: must be >= 1 second"),
        ({**BASE, "master_addr_suffix": "i; rm"}, r"master_addr_suffix: 'i; rm' may hold only letters"),
        ({**BASE, "network_interface": "eth0 ib0"}, r"network_interface: 'eth0 ib0' is not an interface name"),
    ],
)
def test_values_sbatch_would_reject_fail_with_file_and_key(tmp_path, data, match):
    path = _site(tmp_path, data)
    with pytest.raises(SiteError, match=match) as err:
        load_site(path)
    assert str(err.value).startswith(str(path))


def test_unknown_keys_are_named_with_a_suggestion(tmp_path):
    with pytest.raises(SiteError, match=r"site.yaml: signal_delay: unknown key \(did you mean 'signal_delay_s'\?\)"):
        load_site(_site(tmp_path, {**BASE, "signal_delay": 60}))
    with pytest.raises(
        SiteError, match=r"stages.target.gpus: unknown key \(did you mean 'gres'\?\)|stages.target.gpus: unknown key"
    ):
        load_site(_site(tmp_path, with_({"gpus": 2}, "target")))
    with pytest.raises(SiteError, match=r"defaults.partiton: unknown key \(did you mean 'partition'\?\)"):
        load_site(_site(tmp_path, with_({"partiton": "gpu"})))


def test_unquoted_yaml_time_is_refused_not_misread(tmp_path):
    # YAML 1.1 reads 4:00:00 as the base-60 integer 14400; taking it as minutes would ask for 10 days
    path = _site(tmp_path, "name: t\ndefaults:\n  time: 4:00:00\n")
    with pytest.raises(SiteError, match=r"defaults.time: got 14400; write the time limit as a quoted string"):
        load_site(path)


def test_tasks_default_to_one_per_gpu_and_gres_counts_gpus():
    site = parse_site({"name": "g", "defaults": {"gres": "gpu:a100:2", "time": "60"}})
    assert site.stage("target").gpus() == 2 and site.stage("target").ntasks_per_node("target") == 2
    assert site.stage("eval").ntasks_per_node("eval") == 1  # evaluation is one process whatever the GPUs
    cpu = parse_site({"name": "c", "defaults": {"time": "60"}})
    assert cpu.stage("intermediate").ntasks_per_node("intermediate") == 1


def test_multi_line_values_cannot_inject_script_lines():
    with pytest.raises(SiteError, match=r"must be one line"):
        parse_site({"name": "x", "defaults": {"time": "60", "constraint": "a100\nrm -rf /"}})


def test_rendezvous_settings_become_exports_in_every_job(tmp_path):
    site = load_site(
        _site(tmp_path, {**BASE, "dist_timeout_s": 120, "master_addr_suffix": "i", "network_interface": "ib0"})
    )
    assert site.network_exports() == [
        "export HPCXLT_DIST_TIMEOUT_S=120",
        "export HPCXLT_MASTER_ADDR_SUFFIX=i",
        "export NCCL_SOCKET_IFNAME=ib0",
        "export GLOO_SOCKET_IFNAME=ib0",
    ]
    # NCCL's exclusion syntax has no gloo equivalent: gloo is left to choose
    site = load_site(_site(tmp_path, {**BASE, "network_interface": "^docker,lo"}))
    assert site.network_exports() == ["export HPCXLT_DIST_TIMEOUT_S=1800", "export NCCL_SOCKET_IFNAME='^docker,lo'"]


def test_every_profile_field_is_a_key_a_file_may_set():
    """The allowed keys come from SiteProfile itself: a field added there needs no second list."""
    import dataclasses

    from hpcxlt.launch.site.profile import SiteProfile

    for f in dataclasses.fields(SiteProfile):
        if f.name in ("name", "stages", "source"):
            continue
        value = {
            "description": "d",
            "setup": ["true"],
            "mpi_launcher": "mpiexec -n {ntasks}",
            "master_addr_suffix": "i",
            "network_interface": "ib0",
            "offline": True,
        }.get(f.name, 5)
        site = parse_site({"name": "x", "defaults": {"time": "60"}, f.name: value})
        assert getattr(site, f.name) == (tuple(value) if isinstance(value, list) else value)
    with pytest.raises(SiteError, match="source: unknown key"):
        parse_site({"name": "x", "defaults": {"time": "60"}, "source": "elsewhere"})
