"""Shared assets of the launch tests: a tiny model, a small synthetic benchmark, tiny experiment configs.

A plain module (imported by tests/test_worker.py, test_local.py and test_slurm_*.py). The assets are
built once per pytest session under its base temp folder (build_tiny and write_benchmark keep a
complete existing output), so every module that imports `assets` shares them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

TASKS = ("mnli", "xnli", "tatoeba")
LANGUAGES = ("en", "de", "sw")


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """Folder with tiny/ (model + tokenizer) and synth/ (mnli, xnli, tatoeba); no squad on purpose."""
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    root = tmp_path_factory.getbasetemp() / "launch-assets"
    build_tiny(root / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=LANGUAGES)
    write_benchmark(root / "synth", SynthSettings(train_size=100, eval_size=24), tasks=TASKS)
    return root


TRAIN = {
    "lr": 1e-3,
    "micro_batch_size": 8,
    "grad_accum": 1,
    "max_steps": 4,
    "save_every": 2,
    "max_length": 64,
    "zero_stage": 0,
    "precision": "fp32",
}


def experiment(assets: Path, name: str = "launch-test", **sections: Any) -> dict[str, Any]:
    """A tiny experiment: baseline + one English arm, XNLI (trained) and Tatoeba (retrieval only), 1 seed."""
    data = {
        "name": name,
        "model": {"name_or_path": str(assets / "tiny")},
        "data": {
            "source": "local",
            "root": str(assets / "synth"),
            "cache_dir": str(assets / "cache"),
            "max_train_examples": 100,
            "max_eval_examples": 24,
        },
        "arms": [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        "targets": {"tasks": ["xnli", "tatoeba"], "languages": {"xnli": ["en", "de"], "tatoeba": ["de", "sw"]}},
        "seeds": [1],
        "intermediate": dict(TRAIN),
        "target": dict(TRAIN),
        "eval": {"batch_size": 32},
    }
    for key, value in sections.items():
        data[key] = copy.deepcopy(value)
    return data


def write_config(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_for(predicate, *, timeout: float, what: str, interval: float = 1.0):
    """Poll `predicate()` until it returns something truthy; fail the test after `timeout` seconds."""
    import time

    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


@pytest.fixture(scope="module")
def slurm_env(slurm_cluster):
    """Point this process's Slurm clients (squeue, sbatch, submitit) at the local test cluster."""
    import os

    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = slurm_cluster["SLURM_CONF"]
    yield slurm_cluster
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def run_cli(*argv: str) -> tuple[int, str]:
    """Run `hpcxlt ARGV` in this process; return (exit status, stdout)."""
    import contextlib
    import io

    from hpcxlt.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def run_ids(run_dir) -> set[str]:
    """Slurm ids recorded for a run's cells and its aggregation job."""
    from hpcxlt.launch.record import aggregate_state
    from hpcxlt.store import RunStore

    store = RunStore(run_dir)
    ids = {store.state(c.key).get("job_id") for c in store.load_plan().cells}
    ids.add(aggregate_state(store).get("job_id"))
    return {i for i in ids if i}


def queued(run_dir) -> set[str]:
    """The run's jobs that squeue still lists."""
    from hpcxlt.launch.slurm import queue

    return run_ids(run_dir) & set(queue.alive_jobs())


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for an `hpcxlt` child process: the repository importable, and without the
    rendezvous variables an in-process training test left behind (the child would collide on its port)."""
    import os

    from hpcxlt.launch.slurm.submission import RENDEZVOUS_VARS

    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARS}
    from tests.paths import ROOT

    return {**env, "PYTHONPATH": str(ROOT), **extra}
