"""XLM-R Large's real size through the real training path on the CPU: peak memory against the ZeRO arithmetic,
and a kill + resume that must give the same weights bit for bit.

    .venv/bin/python bench/large_cpu.py [--layers 24] [--runs 2:1:fp32 2:1:bf16 3:2:bf16 3:2:fp32] [--steps 4]

Model: XLM-R Large's published configuration (`hpcxlt.demo.large`: 24 layers, hidden 1024, 16 heads, FFN
4096, vocabulary 250,002; 560M parameters), random weights (memory does not depend on their values), the
tiny tokenizer beside it. Data: the synthetic XNLI (English training, en/de test). Each run is one
`--runs` entry ZERO_STAGE:PROCESSES:PRECISION and goes through the code a Slurm job runs
(`hpcxlt.launch.execute.worker.run_job`, torchrun for 2 gloo processes):
  straight   the target cell trained `--steps` optimizer steps (micro-batch 2, max length 128, a checkpoint
             every `--save-every` steps), exported, then its eval job (en, de)
  killed     the same cell in a second run directory; every process SIGKILLs itself the moment its first
             checkpoint is complete (a lost node), then the job runs again: it resumes from that checkpoint
The run's `peak_rss_gib` is the largest peak resident set of any process of either run (training, the
checkpoint load on resume, the export; evaluation runs in a process of its own, as a Slurm eval job does);
`model_states_gib` is the ZeRO arithmetic for that stage, precision and world size plus the activation
estimate (`hpcxlt.grid.memory`, the planner's own numbers); `ratio` = peak / model_states; goal <= 1.25.
`resume_bitwise_equal`: the killed-and-resumed run exported exactly the straight run's weights.
The last line is one JSON object {"runs": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CELL = "target.none.xnli.s1"
EVAL_JOB = "eval.none.xnli.s1"
GIB = 2**30


def experiment(model: Path, data: Path, *, stage: int, precision: str, steps: int, save_every: int) -> dict:
    train = {
        "lr": 1e-5,
        "micro_batch_size": 2,
        "grad_accum": 1,
        "max_steps": steps,
        "save_every": save_every,
        "keep_last": 1,
        "max_length": 128,
        "zero_stage": stage,
        "precision": precision,
    }
    return {
        "name": "large-cpu",
        "model": {"name_or_path": str(model)},
        "data": {"source": "local", "root": str(data), "cache_dir": str(data.parent / "cache")},
        "arms": [{"name": "none"}],
        "targets": {"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
        "seeds": [1],
        "target": train,
        "eval": {"batch_size": 8, "splits": ["test"]},
    }


def prepare_assets(work: Path, layers: int) -> tuple[Path, Path]:
    from hpcxlt.demo.large import build_random_xlmr
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    tiny = build_tiny(work / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=("en", "de"))
    model = build_random_xlmr(work / f"xlmr-large-{layers}l", tokenizer_from=tiny, layers=layers)
    data = work / "synth"
    write_benchmark(data, SynthSettings(train_size=64, eval_size=16), tasks=("xnli",))
    return model, data


def new_run(run_dir: Path, spec: dict) -> None:
    from hpcxlt.config import parse_config
    from hpcxlt.grid.plan import plan
    from hpcxlt.store import RunStore

    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = parse_config(spec)
    RunStore(run_dir).initialize(cfg, plan(cfg))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_job(run_dir: Path, job: str, world: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """One job as a Slurm job runs it: run_job in `world` processes (torchrun when more than one)."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    worker = [str(Path(__file__).resolve()), "--worker", str(run_dir), job]
    if world == 1:
        cmd = [sys.executable, *worker]
    else:
        cmd = [
            str(Path(sys.executable).parent / "torchrun"),
            f"--nproc_per_node={world}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            *worker,
        ]
    log = open(run_dir / f"{job}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, run_dir: Path, job: str, *, allowed: tuple[int, ...] = (0,)) -> None:
    rc = proc.wait()
    if rc not in allowed:
        tail = (run_dir / f"{job}.log").read_text(errors="replace")[-4000:]
        raise SystemExit(f"{job} in {run_dir} exited {rc}:\n{tail}")


def peaks(run_dir: Path) -> dict[str, float]:
    """Peak resident GiB of every process that ran a job in `run_dir` (written by each worker at exit)."""
    out: dict[str, float] = {}
    for path in sorted((run_dir / "peaks").glob("*.json")):
        out[path.stem] = json.loads(path.read_text())["peak_rss_gib"]
    return out


KILL_ENV = "HPCXLT_BENCH_SIGKILL_AFTER_SAVE"


def killed_after_first_checkpoint(run_dir: Path, world: int) -> int:
    """Run the training job so that every process SIGKILLs itself as soon as its first checkpoint is complete
    (a node lost at that moment, at no point the machine's speed decides); returns that checkpoint's step."""
    from hpcxlt.store import RunStore

    proc = start_job(run_dir, CELL, world, env={KILL_ENV: "1"})
    rc = proc.wait()
    folder = RunStore(run_dir).checkpoints_dir(CELL)
    saved = sorted(p for p in folder.glob("step-*") if p.is_dir()) if folder.is_dir() else []
    if rc == 0 or not saved:
        raise SystemExit(f"the job was to be killed after its first checkpoint (rc {rc}, checkpoints {saved})")
    return int(saved[0].name.split("-")[1])


def same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)


def one_run(work: Path, model: Path, data: Path, args, stage: int, world: int, precision: str) -> dict[str, Any]:
    from hpcxlt.store import RunStore

    name = f"z{stage}-n{world}-{precision}"
    spec = experiment(model, data, stage=stage, precision=precision, steps=args.steps, save_every=args.save_every)
    straight, killed = work / f"{name}-straight", work / f"{name}-killed"
    started = time.perf_counter()
    new_run(straight, spec)
    finish(start_job(straight, CELL, world), straight, CELL)
    train_s = time.perf_counter() - started
    finish(start_job(straight, EVAL_JOB, 1), straight, EVAL_JOB)
    new_run(killed, spec)
    killed_at = killed_after_first_checkpoint(killed, world)
    finish(start_job(killed, CELL, world), killed, CELL)
    store_a, store_b = RunStore(straight), RunStore(killed)
    info = store_b.done_info(CELL) or {}
    if not info.get("resumed_from"):
        raise SystemExit(f"{killed}: the second attempt did not resume from a checkpoint ({info})")
    train_peaks = {f"straight.{k}": v for k, v in peaks(straight).items() if k.startswith(CELL)}
    train_peaks.update({f"resumed.{k}": v for k, v in peaks(killed).items() if k.startswith(CELL)})
    scores = (store_a.done_info(f"{EVAL_JOB}.de") or {}).get("scores")
    estimate = estimate_gib(model, stage=stage, world=world, precision=precision)
    peak = max(train_peaks.values())
    row = {
        "zero_stage": stage,
        "world_size": world,
        "precision": precision,
        "peak_rss_gib": round(peak, 2),
        **estimate,
        "ratio": round(peak / estimate["model_states_gib"], 3),
        "peaks_gib": train_peaks,
        "eval_peak_rss_gib": max((v for k, v in peaks(straight).items() if k.startswith(EVAL_JOB)), default=None),
        "killed_at_step": killed_at,
        "resumed_from": info.get("resumed_from"),
        "resume_bitwise_equal": same_weights(store_a.model_dir(CELL), store_b.model_dir(CELL)),
        "eval_scores_de": scores,
        "train_s": round(train_s, 1),
    }
    if not args.keep:
        shutil.rmtree(straight, ignore_errors=True)
        shutil.rmtree(killed, ignore_errors=True)
    return row


def estimate_gib(model: Path, *, stage: int, world: int, precision: str) -> dict[str, float]:
    """The planner's arithmetic for this run (hpcxlt.grid.memory): model states + activations per process."""
    from hpcxlt.grid.memory import TrainingSetup, gpu_memory
    from hpcxlt.grid.resources import ModelShape

    shape = ModelShape.from_config(json.loads((model / "config.json").read_text()))
    setup = TrainingSetup(
        shape=shape,
        head="classification",
        num_labels=3,  # XNLI
        precision=precision,
        zero_stage=stage,
        world_size=world,
        micro_batch_size=2,
        max_length=128,
    )
    estimate = gpu_memory(setup)
    return {
        "model_states_gib": round(estimate.total_gib, 2),
        "states_only_gib": round(estimate.model_states.total / GIB, 2),
        "activations_gib": round(estimate.activations.total / GIB, 3),
    }


def worker(run_dir: str, job: str) -> int:
    """One process of a job: run_job as on a node, then record this process's peak resident memory."""
    import logging

    from hpcxlt.launch.execute.worker import run_job
    from hpcxlt.train.preemption import EXIT_PREEMPTED, Preempted

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get(KILL_ENV):
        from hpcxlt.train import checkpoint

        save = checkpoint.save_checkpoint

        def save_then_die(*args, **kwargs):
            folder = save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return folder

        checkpoint.save_checkpoint = save_then_die  # the loop calls it through the module
    code = 0
    try:
        run_job(run_dir, job)
    except Preempted:
        code = EXIT_PREEMPTED
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = Path(run_dir) / "peaks" / f"{job}.{os.getpid()}.rank{rank}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"peak_rss_gib": round(peak, 3), "rank": rank}))
    return code


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24, help="XLM-R Large's layers to keep (24: the real size)")
    parser.add_argument(
        "--runs",
        nargs="+",
        # two fp32 ZeRO-3 processes of the 24-layer model peak at 8.2 GiB each: they fit a 24 GiB machine
        default=["2:1:fp32", "2:1:bf16", "3:2:bf16", "3:2:fp32"],
        help="ZERO_STAGE:PROCESSES:PRECISION runs (default: 2:1:fp32 2:1:bf16 3:2:bf16 3:2:fp32)",
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per training run")
    parser.add_argument("--save-every", type=int, default=2, help="checkpoint interval (the kill follows the first)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hpcxlt-large-cpu"), help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model, data = prepare_assets(args.work, args.layers)
    rows = []
    for entry in args.runs:
        stage, world, precision = entry.split(":")
        row = one_run(args.work, model, data, args, int(stage), int(world), precision)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"layers": args.layers, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
