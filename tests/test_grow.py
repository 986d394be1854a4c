"""Growing grids: an additive change to a finished run trains and evaluates only the new cells; a change
to planned cells is refused; `--reuse-from` takes another run's equal cells instead of redoing them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment, subprocess_env, write_config  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _submit(config: Path, run_dir: Path, *extra: str) -> tuple[int, str]:
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "submit", str(config), "--run-dir", str(run_dir), "--no-progress", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _ran_jobs(output: str) -> int:
    match = re.search(r"ran (\d+) jobs", output)
    return int(match.group(1)) if match else 0


def _seed_jobs(store: RunStore, seed: int) -> int:
    return sum(1 for job in store.load_plan().jobs if job.key.split(".")[-1] == f"s{seed}" or f".s{seed}." in job.key)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, assets):
    """A finished one-seed run."""
    tmp = tmp_path_factory.mktemp("grow")
    config = write_config(tmp, experiment(assets, name="grow"))
    code, out = _submit(config, tmp / "run")
    assert code == 0, out[-3000:]
    return tmp, RunStore(tmp / "run")


def test_adding_a_seed_runs_only_the_new_seeds_cells(tmp_path, assets, finished):
    _, first = finished
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(first.root, run_dir, symlinks=True)
    store = RunStore(run_dir)
    before = {cell.key: store.done_info(cell.key) for cell in store.load_plan().cells}
    config = write_config(tmp_path, experiment(assets, name="grow", seeds=[1, 2]))
    code, out = _submit(config, run_dir)
    assert code == 0, out[-3000:]
    added = len(store.load_plan().cells) - len(before)
    assert f"grew {store.root} by {added} cell(s)" in out
    assert _ran_jobs(out) == _seed_jobs(store, 2) > 0  # the new seed's jobs, nothing of seed 1
    assert {key: store.done_info(key) for key in before} == before  # done markers untouched
    assert all(store.is_done(cell.key) for cell in store.load_plan().cells)
    starts = [
        key
        for key in before
        if store.train_log_path(key).exists() and store.train_log_path(key).read_text().count('"event": "start"') != 1
    ]
    assert starts == []  # no seed-1 cell trained a second time


def test_a_change_to_planned_cells_is_refused_listing_them(tmp_path, assets, finished):
    _, store = finished
    data = experiment(assets, name="grow")
    data["target"]["lr"] = 5e-4
    config = write_config(tmp_path, data)
    text_before = store.config_path.read_text()
    code, out = _submit(config, store.root)
    assert code == 2
    assert "planned cell(s) would change: " in out and "target.none.xnli.s1" in out and "eval.none.xnli.s1.de" in out
    assert "target.lr" in out and "--reuse-from" in out
    assert store.config_path.read_text() == text_before


def test_reuse_from_runs_none_of_the_shared_cells_again(tmp_path, assets, finished):
    _, first = finished
    config = write_config(tmp_path, experiment(assets, name="grow", seeds=[1, 2]))
    run_dir = tmp_path / "run"
    code, out = _submit(config, run_dir, "--reuse-from", str(first.root))
    assert code == 0, out[-3000:]
    store = RunStore(run_dir)
    shared = [cell.key for cell in first.load_plan().cells]
    fingerprints = {cell.fingerprint for cell in first.load_plan().cells}
    equal = [cell.key for cell in store.load_plan().cells if cell.fingerprint in fingerprints]
    # every seed-1 cell, and the untrained baseline's seed-2 retrieval cells (the same work: no seed in it)
    assert set(shared) < set(equal) and f"reused {len(equal)} done cell(s)" in out
    assert _ran_jobs(out) < _seed_jobs(store, 2)
    for key in shared:
        assert store.done_info(key)["reused_from"] == str(first.cell_dir(key))
    first_plan, plan = first.load_plan(), store.load_plan()
    for cell in first_plan.stage_cells("eval"):
        theirs = first.cell_records(cell.key, first_plan)
        mine = store.cell_records(cell.key, plan)
        assert theirs and [(r["split"], r["metrics"]) for r in mine] == [(r["split"], r["metrics"]) for r in theirs]
    assert (store.model_dir("target.en.xnli.s1") / "model.safetensors").is_file()  # linked, not retrained


def test_reused_models_outlive_the_source_run_and_the_dry_run_counts_what_would_still_run(tmp_path, assets, finished):
    """Reused models are hard links (the same bytes, no copy), never symbolic links: deleting the other run
    leaves this one whole. The dry run counts the reuse: a plan the other run covers would run nothing."""
    import json
    import shutil

    tmp, first = finished
    source = tmp_path / "source"
    shutil.copytree(first.root, source, symlinks=True)
    config = write_config(tmp_path, experiment(assets, name="grow"))  # the same experiment: all reusable
    run_dir = tmp_path / "run"
    code, dry = _submit(config, run_dir, "--reuse-from", str(source), "--dry-run", "--json")
    assert code == 0, dry[-3000:]
    cells = len(RunStore(source).load_plan().cells)
    assert f"would reuse {cells} done cell(s)" in dry
    assert json.loads(dry.strip().splitlines()[-1])["jobs"] == 0
    code, out = _submit(config, run_dir, "--reuse-from", str(source))
    assert code == 0 and _ran_jobs(out) == 0 and f"reused {cells} done cell(s)" in out, out[-3000:]
    store = RunStore(run_dir)
    model = store.model_dir("target.en.xnli.s1") / "model.safetensors"
    theirs = RunStore(source).model_dir("target.en.xnli.s1") / "model.safetensors"
    assert not store.model_dir("target.en.xnli.s1").is_symlink() and model.stat().st_ino == theirs.stat().st_ino
    shutil.rmtree(source)
    assert model.is_file() and model.stat().st_nlink == 1
    code, status = _submit_status(run_dir)
    assert code == 0 and json.loads(status)["done"] is True


def _submit_status(run_dir: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "status", str(run_dir), "--json"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout


def test_redo_runs_a_cell_and_its_downstream_again_and_keeps_what_they_had(tmp_path, finished):
    import json
    import shutil

    _, first = finished
    run_dir = tmp_path / "run"
    shutil.copytree(first.root, run_dir, symlinks=True)
    store = RunStore(run_dir)
    plan = store.load_plan()
    evals = [c.key for c in plan.cells if c.deps == ("target.en.xnli.s1",)]
    assert evals  # the target's evaluations hang from it
    before = {key: store.done_info(key) for key in ["target.en.xnli.s1", *evals]}
    dry = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "redo", str(run_dir), "target.en.xnli.s1", "--dry-run", "--json"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    summary = json.loads(dry.stdout.strip().splitlines()[-1])
    assert summary["keys"] == ["target.en.xnli.s1", *evals] and summary["done_now"] == 1 + len(evals)
    assert {key: store.done_info(key) for key in before} == before  # a dry run changes nothing
    done = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "redo", str(run_dir), "target.en.xnli.s1"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"ran {1 + len({plan.job_of(k).key for k in evals})} jobs" in done.stdout
    (kept,) = (run_dir / "cells").glob(".redo-*")
    assert (kept / "target.en.xnli.s1" / "model" / "model.safetensors").is_file()  # nothing lost
    assert json.loads((kept / "target.en.xnli.s1" / "done.json").read_text()) == before["target.en.xnli.s1"]
    for key in before:
        assert store.is_done(key) and store.done_info(key)["finished"] > before[key]["finished"]
    for key in evals:
        assert len(store.cell_records(key, plan)) == len(first.cell_records(key, first.load_plan()))
    assert list((run_dir / "results").glob(".redo-*/*.jsonl"))
    untouched = [c.key for c in plan.cells if c.key not in before]
    assert all(store.done_info(k) == first.done_info(k) for k in untouched)
