"""On the two-node local cluster (`make slurm-up`: slurm/up.sh --nodes 2, nodes n1 and n2 in their own
network namespaces): a training cell submitted with slurm/sites/local-2node.yaml trains with ZeRO-3 on
one rank per node and ends with the weights of the same cell trained by 2 processes on one node; a
2-node job that is preempted and then loses a node resumes twice to the same weights; `srun -N 2 -n 4
hpcxlt aggregate` prints the tables of one rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, run_cli, slurm_env, subprocess_env, wait_for, write_config  # noqa: F401
from tests.paths import ROOT
from tests.slurm_fixture import frozen, slurm_cluster, two_nodes  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(ROOT / "slurm" / "sites" / "local-2node.yaml")
KEY = "target.none.xnli.s1"
# the environment local-2node.yaml's setup gives the jobs, so the reference run computes exactly alike
JOB_ENV = {
    "OMP_NUM_THREADS": "1",
    "DS_ACCELERATOR": "cpu",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


def _config(folder, assets):
    data = experiment(
        assets,
        name="two-node",
        arms=[{"name": "none"}],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
    )
    # ZeRO-3: every rank holds a shard of parameters, gradients and optimizer state; long enough to preempt
    data["target"].update(max_steps=60, save_every=10, zero_stage=3)
    return write_config(folder, data)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, assets):
    """The same cell trained by 2 processes on one node (torchrun, loopback), started at once so it overlaps."""
    from hpcxlt.config import load_config
    from hpcxlt.grid import plan

    tmp = tmp_path_factory.mktemp("one-node")
    cfg = load_config(_config(tmp, assets))
    store = RunStore(tmp / "run")
    store.initialize(cfg, plan(cfg))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            TORCHRUN,
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(ROOT / "tests" / "cell_worker.py"),
            str(store.root),
            KEY,
        ],
        env=subprocess_env(**JOB_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )

    def finished() -> RunStore:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]
        assert store.is_done(KEY)
        return store

    yield finished
    if proc.poll() is None:
        proc.kill()


def _weights(store: RunStore) -> dict:
    from safetensors.torch import load_file

    return load_file(store.model_dir(KEY) / "model.safetensors")


def _assert_same_weights(store: RunStore, ref: RunStore) -> None:
    mine, theirs = _weights(store), _weights(ref)
    assert mine.keys() == theirs.keys()
    differing = [name for name in mine if not (mine[name] == theirs[name]).all()]
    assert not differing, f"weights differ from the one-node run in {differing[:5]}"


def _events(store: RunStore) -> list[dict]:
    return [json.loads(line) for line in store.train_log_path(KEY).read_text().splitlines() if '"event"' in line]


def _submit(request, folder, assets, *extra: str) -> RunStore:
    run_dir = folder / "run"
    code, out = run_cli("submit", str(_config(folder, assets)), "--run-dir", str(run_dir), "--site", SITE, *extra)
    assert code == 0, out
    # a failed test leaves nothing queued that would hold the two nodes for the tests after it
    request.addfinalizer(lambda: run_cli("cancel", str(run_dir)))
    return RunStore(run_dir)


def _finish(store: RunStore, timeout: float = 600) -> None:
    wait_for(
        lambda: all(store.is_done(c.key) for c in store.load_plan().cells),
        timeout=timeout,
        what="every cell to finish",
        interval=2,
    )


@pytest.fixture(scope="module")
def two_node_run(request, tmp_path_factory, assets, slurm_env, two_nodes) -> RunStore:
    """The grid (one ZeRO-3 training cell, two evaluations) run on the two-node site, every cell done."""
    store = _submit(request, tmp_path_factory.mktemp("two-node"), assets, "--no-aggregate")
    _finish(store)
    return store


def test_a_cell_trains_on_both_nodes_to_the_weights_of_one_node(two_node_run, reference):
    start = next(e for e in _events(two_node_run) if e["event"] == "start")
    assert start["world_size"] == 2 and start["zero_stage"] == 3
    assert start["hosts"] == ["n1", "n2"], f"rank 0 and rank 1 should run on n1 and n2, ran on {start['hosts']}"
    job = two_node_run.state(KEY)["job_id"]
    submission = (two_node_run.logs_dir / "slurm" / f"{job}_submission.sh").read_text()
    assert "#SBATCH --nodes=2\n" in submission and "export GLOO_SOCKET_IFNAME=eth0" in submission
    _assert_same_weights(two_node_run, reference())


def test_srun_over_two_nodes_aggregates_to_the_single_rank_tables(two_node_run, slurm_env, tmp_path):
    # MPICH's default UCX netmod publishes addresses of kilobytes through PMI-1 `put`s, which Slurm 22.05's
    # pmi2 plugin sometimes reads split ("value not properly terminated in client request" in slurmd's log)
    # and the ranks then wait in MPI_Init forever; the OFI netmod's addresses are short (docs/multinode.md)
    env = subprocess_env(**JOB_ENV, MPIR_CVAR_CH4_NETMOD="ofi")
    command = [sys.executable, "-m", "hpcxlt", "aggregate", str(two_node_run.root), "--partial", "--no-plots"]
    single = subprocess.run(
        [*command, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr[-3000:]
    # MPICH's PMI-2 through Slurm's plugin: 4 MPI ranks, two on each node
    spread = subprocess.run(
        [
            "srun",
            "-p",
            "multi",
            "-N",
            "2",
            "-n",
            "4",
            "--mpi=pmi2",
            "-t",
            "10",
            *command,
            "--out",
            str(tmp_path / "four"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert spread.returncode == 0, spread.stderr[-3000:]
    head, _, tables = spread.stdout.partition("\n")
    assert "(4 MPI ranks: 3 reading" in head, head
    single_head, _, single_tables = single.stdout.partition("\n")
    assert "(1 rank)" in single_head
    assert tables.replace(str(tmp_path / "four"), "OUT") == single_tables.replace(str(tmp_path / "one"), "OUT")
    for name in os.listdir(tmp_path / "one"):  # the files, too (they name their own folder)
        four = (tmp_path / "four" / name).read_text().replace(str(tmp_path / "four"), "OUT")
        assert four == (tmp_path / "one" / name).read_text().replace(str(tmp_path / "one"), "OUT"), name


def _reached(pid: int, signum: int) -> bool:
    """Whether signal `signum` reached the frozen process: it waits there undelivered, or Slurm woke the
    process itself (it sends SIGCONT with the signal) and it went on or already exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except FileNotFoundError:
        return True
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    if not fields.get("State", "").strip().startswith(("T", "t")):
        return True
    return any(int(fields[name].strip(), 16) & (1 << (signum - 1)) for name in ("SigPnd", "ShdPnd"))


def _checkpointed_after(store: RunStore, step: int) -> bool:
    """A complete checkpoint (its manifest written) of a step after `step`."""
    from hpcxlt.train.checkpoint import MANIFEST, STEP_DIR

    for path in store.checkpoints_dir(KEY).glob("step-*"):
        match = STEP_DIR.match(path.name)
        if match and int(match.group(1)) > step and (path / MANIFEST).is_file():
            return True
    return False


def _lose_node(name: str) -> None:
    """Node `name` fails: every process in its network namespace (slurmd, slurmstepd, the job's task) dies at
    once, as when a machine loses power, and an administrator marks it DOWN."""
    import signal

    from tests.slurm_fixture import state_dir

    namespaces = (state_dir() / "etc" / "netns.list").read_text().split()
    netns = f"hxn{name.removeprefix('n')}"
    assert netns in namespaces, f"{netns} is not one of the cluster's namespaces: {namespaces}"
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout.split()
    assert pids, f"nothing runs in {netns}"
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["scontrol", "update", f"nodename={name}", "state=down", "reason=hpcxlt-test-node-lost"], check=True)


def test_a_two_node_cell_survives_preemption_then_a_lost_node(
    request, tmp_path, assets, slurm_env, two_nodes, reference, slurm_cluster
):
    """One run, two interruptions (each a resume from the last checkpoint), the weights of no interruption."""
    import signal

    from hpcxlt.launch.slurm import queue
    from tests.slurm_fixture import state_dir

    store = _submit(request, tmp_path, assets, "--no-aggregate")
    wait_for(
        lambda: store.state(KEY)["state"] == "running" and list(store.checkpoints_dir(KEY).glob("step-*")),
        timeout=300,
        what=f"{KEY} to run on both nodes and write its first checkpoint",
        interval=0.1,
    )
    job_id = store.state(KEY)["job_id"]
    # 1. Preemption. Independent of the machine's speed: both ranks are frozen mid-training, so they cannot
    # finish before the preemption reaches them; they go on once Slurm's USR2 has reached each of them.
    with frozen(job_id, 2) as pids:
        assert not store.is_done(KEY), "training finished before it could be frozen: raise max_steps"
        # a job in `multi-high` needs every CPU of both nodes: Slurm preempts the training job (USR2, grace, requeue)
        high = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "-p",
                "multi-high",
                "-N",
                "2",
                "--ntasks-per-node",
                "2",
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 2",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_for(
            lambda: all(_reached(pid, signal.SIGUSR2) for pid in pids),
            timeout=60,
            what="Slurm's preemption signal (USR2) to reach both ranks",
            interval=0.1,
        )
    wait_for(
        lambda: "resume" in [e["event"] for e in _events(store)] and store.state(KEY)["state"] == "running",
        timeout=300,
        what="the requeued job to resume on both nodes",
        interval=0.1,
    )
    state = store.state(KEY)
    assert state["requeues"] == 1 and state["attempts"] == 2 and state["job_id"] == job_id  # the same job, requeued
    # rank 0 alone keeps the books and requeues; rank 1 (on n2) says so in its own log
    rank1 = (store.logs_dir / "slurm" / f"{job_id}_1_log.out").read_text()
    assert "rank 0 requeues the job" in rank1 and "global_rank=1(2)" in rank1
    assert queue.accounting([high])[high]["State"] == "COMPLETED"
    resumed = next(e for e in _events(store) if e["event"] == "resume")
    assert resumed["hosts"] == ["n1", "n2"] and resumed["world_size"] == 2
    events = [e["event"] for e in _events(store)]
    assert events.index("preempted") < events.index("resume"), events

    # 2. A node lost mid-training, once the resumed job has checkpointed again (both ranks frozen first, so
    # the loss lands before the end of training on any machine; Slurm's clean-up kills the frozen rank on n1).
    saved = resumed["step"]
    wait_for(lambda: _checkpointed_after(store, saved), timeout=300, what="a checkpoint after the resume", interval=0.1)
    try:
        with frozen(job_id, 2):
            assert not store.is_done(KEY), "training finished before a node could be lost: raise max_steps"
            _lose_node("n2")
    finally:
        # the node comes back (up.sh again starts the missing slurmd and returns DOWN nodes to service)
        back = subprocess.run(
            ["bash", str(ROOT / "slurm" / "up.sh"), str(state_dir())],
            env=slurm_cluster,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert back.returncode == 0, back.stderr[-2000:]
    # Slurm requeues the job (NODE_FAIL, and the job asked for --requeue); `hpcxlt resume` is the fallback a
    # user would run
    trained = lambda: store.is_done(KEY)  # noqa: E731  (its evaluations do not matter here)
    try:
        wait_for(trained, timeout=300, what=f"{KEY} to finish after the node came back", interval=1)
    except BaseException:
        code, out = run_cli("resume", str(store.root), "--site", SITE)
        assert code == 0, out
        wait_for(trained, timeout=300, what=f"{KEY} to finish after `hpcxlt resume`", interval=1)
    assert [e["event"] for e in _events(store)].count("resume") == 2, [e["event"] for e in _events(store)]
    _assert_same_weights(store, reference())
