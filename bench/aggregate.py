"""Benchmark `hpcxlt aggregate` on a million synthetic result records: 1 rank vs N MPI ranks.

Writes a run directory (real config and plan: 6 arms x the ten XTREME-R tasks in all their
languages x enough seeds for --records) in the layout evaluation jobs write (`jobs`: one JSON-lines
file per eval job, written by the same `RunStore.add_results` call), or in the one-record-per-file
layout of earlier versions, or in 64 JSON-lines shards; then aggregates it once as a single process
and once under `mpiexec -n RANKS`, in this session, checks both give the same tables, and prints the
times. Last line: one JSON object.

    .venv/bin/python bench/aggregate.py                     # 1M records, the jobs' layout, 4 ranks
    .venv/bin/python bench/aggregate.py --records 100000 --layout files --ranks 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARMS = [
    {"name": "none"},
    {"name": "mnli", "tasks": ["mnli"]},
    {"name": "mnli_lr", "tasks": ["mnli", "sib200"], "compare_to": "mnli"},
    {"name": "squad", "tasks": ["squad"]},
    {"name": "squad_lr", "tasks": ["squad", "tydiqa_lowres"], "compare_to": "squad"},
    {"name": "hellaswag", "tasks": ["hellaswag"]},
]
SHARDS = 64
"""JSON-lines shards in the jsonl layout (several per rank, so the partition stays balanced)."""


def build_run(root: Path, records: int, layout: str) -> dict:
    """Initialize a run directory with at least `records` planned eval cells, and write one record for each."""
    from hpcxlt.config import parse_config
    from hpcxlt.demo.records import made_up_record
    from hpcxlt.evaluate.scoring import XTREME_R_TASKS
    from hpcxlt.grid.plan import plan
    from hpcxlt.store import RunStore
    from hpcxlt.tasks.registry import get_task

    per_seed = len(ARMS) * sum(len(get_task(t).languages) for t in XTREME_R_TASKS)
    seeds = max(1, math.ceil(records / per_seed))
    cfg = parse_config(
        {"name": "bench", "arms": ARMS, "targets": {"tasks": list(XTREME_R_TASKS)}, "seeds": list(range(1, seeds + 1))}
    )
    clock = time.perf_counter()
    grid = plan(cfg)
    store = RunStore(root)
    store.initialize(cfg, grid)
    plan_s = time.perf_counter() - clock
    clock = time.perf_counter()
    rng = random.Random(0)
    arm_index = {arm["name"]: index for index, arm in enumerate(ARMS)}
    records: list[tuple[str, dict]] = []
    for cell in grid.stage_cells("eval"):
        score = round(55 + 3 * arm_index[cell.arm] + 10 * rng.random(), 4)
        records.append((cell.key, made_up_record(store, cell, score)))
    results = store.results_dir
    results.mkdir(parents=True, exist_ok=True)
    if layout == "jobs":
        # what evaluation jobs write: one JSON-lines file per eval job, through the same store call
        by_job: dict[str, list[dict]] = {}
        for key, record in records:
            by_job.setdefault(grid.job_of(key).key, []).append(record)
        for job_key, job_records in by_job.items():
            store.add_results(job_key, job_records)
        files = len(by_job)
    elif layout == "files":
        # the one-record files of earlier versions; plain writes: 1M fsyncs would measure the disk, not us
        for key, record in records:
            with open(results / f"{key}.test.json", "w", encoding="utf-8") as handle:
                json.dump(record, handle)
        files = len(records)
    else:
        step = math.ceil(len(records) / SHARDS)
        for index in range(0, len(records), step):
            body = "".join(json.dumps(record) + "\n" for _, record in records[index : index + step])
            (results / f"shard-{index // step:04d}.jsonl").write_text(body, encoding="utf-8")
        files = math.ceil(len(records) / step)
    return {
        "records": len(records),
        "seeds": seeds,
        "plan_s": round(plan_s, 2),
        "write_s": round(time.perf_counter() - clock, 2),
        "files": files,
        "plan_json_mb": round(store.plan_path.stat().st_size / 2**20, 1),
    }


def worker(run_dir: str, out: str) -> None:
    """What each rank runs: the aggregation without plots; rank 0 prints timings and a digest of the tables."""
    import hashlib

    from hpcxlt.aggregate.aggregate_run import Options, aggregate

    report = aggregate(run_dir, Options(out=out, plots=False))
    if report is None:
        return
    data = {k: v for k, v in report.data.items() if k != "files"}  # paths differ between the two runs
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    print(
        json.dumps(
            {
                "ranks": report.gathered.ranks,
                "timings": {k: round(v, 2) for k, v in report.gathered.timings.items()},
                "digest": digest,
                "valid": report.data["records"]["valid"],
            }
        )
    )


def timed(cmd: list[str]) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    env["PYTHONPATH"] = str(REPO)
    clock = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - clock
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def default_workdir() -> str | None:
    """/dev/shm when it has room: a million small files cost ~4 GiB there, but creating and deleting them
    on a disk mounted with `discard` takes half an hour (measured: 600 unlinks/s); None: the temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free >= 8 * 2**30:
        return str(shm)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="at least this many records (default 1M)")
    parser.add_argument("--ranks", type=int, default=4, help="MPI ranks to compare with one (default 4)")
    parser.add_argument(
        "--layout",
        choices=("jobs", "files", "jsonl"),
        action="append",
        help="jobs: what eval jobs write (default); files: one record per file (earlier "
        "versions); jsonl: 64 shards. Repeat to compare",
    )
    parser.add_argument(
        "--workdir",
        help="where to build the run directories (default: /dev/shm when it has "
        "8 GiB free, else the system's temporary folder)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    parser.add_argument("--worker", nargs=2, metavar=("RUN_DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    mpiexec = Path(sys.executable).parent / "mpiexec"
    base = Path(tempfile.mkdtemp(prefix="hpcxlt-bench-aggregate-", dir=args.workdir or default_workdir()))
    layouts = tuple(args.layout or ["jobs"])
    summary: dict = {
        "bench": "aggregate",
        "cpus": os.cpu_count(),
        "ranks": args.ranks,
        "workdir": str(base.parent),
        "layouts": {},
    }
    print(f"run directories under {base}", flush=True)
    try:
        for layout in layouts:
            run_dir = base / layout
            built = build_run(run_dir, args.records, layout)
            print(
                f"[{layout}] wrote {built['records']:,} records in {built['files']:,} files "
                f"(plan {built['plan_s']} s, write {built['write_s']} s)",
                flush=True,
            )
            me = [sys.executable, str(Path(__file__).resolve()), "--worker", str(run_dir)]
            one_s, one = timed([*me, str(run_dir / "out-1")])
            print(f"[{layout}] 1 rank:  {one_s:7.2f} s  phases {one['timings']}", flush=True)
            many_s, many = timed([str(mpiexec), "-n", str(args.ranks), *me, str(run_dir / f"out-{args.ranks}")])
            print(f"[{layout}] {args.ranks} ranks: {many_s:7.2f} s  phases {many['timings']}", flush=True)
            if one["digest"] != many["digest"] or many["ranks"] != args.ranks:
                raise SystemExit(f"[{layout}] the {args.ranks}-rank tables differ from the 1-rank tables")
            summary["layouts"][layout] = {
                **built,
                "one_rank_s": round(one_s, 2),
                "n_rank_s": round(many_s, 2),
                "speedup": round(one_s / many_s, 2),
                "one_rank_phases": one["timings"],
                "n_rank_phases": many["timings"],
                "identical_tables": True,
            }
            if not args.keep:
                shutil.rmtree(run_dir)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
