"""Fault-injection soak: the demo grid killed with SIGKILL at many random moments, and a training job on the
local Slurm cluster preempted many times; both must end exactly like an uninterrupted run.

Part 1 (local executor): run the grid once uninterrupted (the reference), then again in a fresh run
directory, killing `hpcxlt submit` (SIGKILL, no handler runs) at --kills random, seeded moments and
starting it again after each, until it finishes. Checks: every cell done, the tables (`hpcxlt aggregate
--json`) equal the reference's, and no finished work redone (a cell's done marker never changes once
written; training cells export their model once, counted from the job logs).
Part 2 (Slurm, skipped with --preemptions 0): one long training cell on the local cluster, preempted
with SIGUSR2 (`scancel --signal=USR2`, submitit's preemption path) --preemptions times, each after a newer
checkpoint; it must finish without `hpcxlt resume` with weights equal to the same cell run locally.
Last line: one JSON object.

    .venv/bin/python bench/soak.py                       # 100 kills + 20 preemptions (tens of minutes)
    .venv/bin/python bench/soak.py --kills 10 --preemptions 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _env() -> dict[str, str]:
    from hpcxlt.launch.slurm.submission import RENDEZVOUS_VARS

    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARS}
    return {
        **env,
        "PYTHONPATH": str(REPO),
        "DS_ACCELERATOR": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def hpcxlt(*argv: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "hpcxlt", *argv], env={**_env(), **env}, capture_output=True, text=True, cwd=REPO
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"hpcxlt {' '.join(argv)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def tables(run_dir: Path) -> dict:
    out = json.loads(hpcxlt("aggregate", str(run_dir), "--partial", "--json").stdout)
    return {k: v for k, v in out.items() if k in ("tables", "records", "missing", "duplicates", "complete")}


def done_markers(run_dir: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (run_dir / "cells").glob("*/done.json")}


def soak_local(config: Path, work: Path, kills: int, rng: random.Random, delays: tuple[float, float]) -> dict:
    reference, run_dir = work / "reference", work / "soaked"
    started = time.perf_counter()
    hpcxlt("submit", str(config), "--run-dir", str(reference), "--no-progress")
    uninterrupted_s = time.perf_counter() - started
    seen: dict[str, str] = {}
    changed: set[str] = set()
    killed = 0
    started = time.perf_counter()
    while True:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcxlt", "submit", str(config), "--run-dir", str(run_dir), "--no-progress"],
            env=_env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if killed < kills:
            try:
                proc.wait(timeout=rng.uniform(*delays))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed += 1
            else:
                if proc.returncode == 0:
                    break
        else:
            if proc.wait() == 0:
                break
        for key, text in done_markers(run_dir).items():  # finished work is never redone
            if key in seen and seen[key] != text:
                changed.add(key)
            seen.setdefault(key, text)
        print(f"soak: {killed} kill(s), {len(seen)} cells done", file=sys.stderr, flush=True)
    for key, text in done_markers(run_dir).items():
        if key in seen and seen[key] != text:
            changed.add(key)
    from hpcxlt.store import RunStore

    store = RunStore(run_dir)
    cells = store.load_plan().cells
    lost = [c.key for c in cells if not store.is_done(c.key)]
    exports = {
        c.key: (store.logs_dir / "local" / f"{c.key}.log").read_text().count(" exported ")
        for c in cells
        if c.stage != "eval" and (store.logs_dir / "local" / f"{c.key}.log").exists()
    }
    same = tables(run_dir) == tables(reference)
    return {
        "kills": killed,
        "kills_asked": kills,
        "cells": len(cells),
        "lost": lost,
        "redone": sorted(changed),
        "exported_twice": sorted(k for k, n in exports.items() if n > 1),
        "tables_equal": same,
        "uninterrupted_s": round(uninterrupted_s, 1),
        "soaked_s": round(time.perf_counter() - started, 1),
        "ok": same and not lost and not changed,
    }


def soak_slurm(work: Path, preemptions: int) -> dict:
    """One long training cell on the local cluster, preempted again and again (SIGUSR2)."""
    import yaml

    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny
    from hpcxlt.launch.slurm import queue
    from hpcxlt.store import RunStore
    from hpcxlt.train import checkpoint as ckpt

    build_tiny(work / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=("en", "de"))
    write_benchmark(work / "synth", SynthSettings(train_size=200, eval_size=24), tasks=("xnli",))
    train = {
        "lr": 1e-3,
        "micro_batch_size": 8,
        "grad_accum": 1,
        "max_steps": 40 * (preemptions + 2),
        "save_every": 20,
        "max_length": 64,
        "zero_stage": 0,
        "precision": "fp32",
    }
    config = {
        "name": "soak-slurm",
        "model": {"name_or_path": str(work / "tiny")},
        "data": {"source": "local", "root": str(work / "synth"), "cache_dir": str(work / "cache")},
        "arms": [{"name": "none"}],
        "targets": {"tasks": ["xnli"], "languages": {"xnli": ["en"]}},
        "seeds": [1],
        "intermediate": train,
        "target": train,
    }
    path = work / "soak-slurm.yaml"
    path.write_text(yaml.safe_dump(config))
    # the reference computes exactly as the cluster's jobs do (slurm/sites/local.yaml's setup: one thread)
    hpcxlt("submit", str(path), "--run-dir", str(work / "slurm-reference"), "--no-progress", OMP_NUM_THREADS="1")
    key = "target.none.xnli.s1"
    site = REPO / "slurm" / "sites" / "local.yaml"
    hpcxlt("submit", str(path), "--run-dir", str(work / "slurm-run"), "--site", str(site), "--no-aggregate")
    store = RunStore(work / "slurm-run")
    done, last_step = 0, -1
    deadline = time.time() + 60 * 60
    while done < preemptions and not store.is_done(key) and time.time() < deadline:
        newest = ckpt.latest_checkpoint(store.checkpoints_dir(key))
        state = store.state(key)
        if state.get("state") == "running" and newest is not None and ckpt.step_of(newest) > last_step:
            last_step = ckpt.step_of(newest)
            queue.cancel([state["job_id"]], signal="USR2")
            done += 1
            print(f"soak: preemption {done} after step {last_step}", file=sys.stderr, flush=True)
            while store.state(key).get("state") == "running" and time.time() < deadline:
                time.sleep(0.5)
        time.sleep(0.5)
    while not store.is_done(key) and time.time() < deadline:
        time.sleep(2)
    from safetensors.torch import load_file

    mine = load_file(str(store.model_dir(key) / "model.safetensors"))
    theirs = load_file(str(RunStore(work / "slurm-reference").model_dir(key) / "model.safetensors"))
    equal = mine.keys() == theirs.keys() and all(bool((mine[k] == theirs[k]).all()) for k in mine)
    state = store.state(key)
    return {
        "preemptions": done,
        "finished": store.is_done(key),
        "attempts": state.get("attempts"),
        "weights_equal": equal,
        "ok": store.is_done(key) and equal and done == preemptions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="grid for part 1 (local)")
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of the local grid")
    parser.add_argument(
        "--preemptions", type=int, default=20, help="SIGUSR2 preemptions on the local cluster (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed of the kill moments")
    parser.add_argument(
        "--delay",
        type=float,
        nargs=2,
        default=(1.0, 10.0),
        metavar=("MIN", "MAX"),
        help="seconds after each (re)start at which the kill lands, uniform in [MIN, MAX]; short "
        "delays land in start-up as often as in training, so the grid survives many kills "
        "before it finishes (it stops being killed once it finishes)",
    )
    args = parser.parse_args()
    result: dict = {"command": " ".join(["bench/soak.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="hpcxlt-soak-") as tmp:
        work = Path(tmp)
        result["local"] = soak_local(
            Path(args.config).resolve(), work, args.kills, random.Random(args.seed), tuple(args.delay)
        )
        if args.preemptions:
            result["slurm"] = soak_slurm(work, args.preemptions)
    result["ok"] = result["local"]["ok"] and result.get("slurm", {"ok": True})["ok"]
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
