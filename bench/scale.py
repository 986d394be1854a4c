"""How the commands' costs grow with the grid: plan, submit, status, resume, cancel and aggregate at ~1k, 10k, 100k cells.

    source /tmp/hpcxlt-slurm/env.sh    # the local cluster of `make slurm-up`
    .venv/bin/python bench/scale.py [--seeds 1 10 100] [--arms 5] [--done 0.25] [--repeats 3] [--workdir DIR]

The grid is `configs/phang2020.yaml` with its first --arms arms (`none` and single English intermediate
tasks) and 1, 10 and 100 seeds (`-o arms=... -o seeds=[...]`): 1,069, 10,690 and 106,900 cells. Every
command is the real CLI as a user types it (`hpcxlt ...`, a fresh process each, wall time from start to
exit), in one run of this script against the local Slurm cluster:

- `hpcxlt plan CONFIG -o ...`;
- `hpcxlt submit CONFIG --run-dir DIR --site SITE -o ...`: SITE is `slurm/sites/local.yaml` with
  `sbatch_extra: {begin: now+30days}`, so every job waits for its begin time and nothing runs (what a user
  does to stage a sweep; the jobs are submitted, recorded and released exactly as on the day);
- then, as if part of the sweep had run, --done of the evaluation jobs (whole jobs) get their result
  records and done markers, written by the store's own writers (`RunStore.add_results`, `mark_done`) in
  the record format evaluation jobs write (not timed);
- `hpcxlt status DIR`, `hpcxlt status DIR --json`, `hpcxlt resume DIR` (nothing to resume: every cell is
  done or queued), `hpcxlt aggregate DIR --partial`, then `hpcxlt cancel DIR` (the queue is left clean).

sbatch is called through a shim on PATH that logs each call's start and end: submit's and resume's own
time is their wall time less the time sbatch calls were in flight (resume must make none). The read-only
commands run --repeats times and report the median. Growth per 10x: the ratio of a command's times at
two sizes over the ratio of their cell counts (1.0: linear; above 1: faster than the cell count).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "configs" / "phang2020.yaml"
SITE = ROOT / "slurm" / "sites" / "local.yaml"
REPEATED = ("plan", "status", "status_json", "resume", "aggregate")
"""Commands that change nothing when run again (resume has nothing to do): run --repeats times, median kept."""

SHIM = """#!/bin/bash
start=$EPOCHREALTIME
{real} "$@"
rc=$?
echo "$start $EPOCHREALTIME" >> "$HPCXLT_SCALE_SBATCH_LOG"
exit $rc
"""


def hpcxlt_command() -> list[str]:
    """The CLI as installed in the venv (what a user runs), else this interpreter's `-m hpcxlt`."""
    script = Path(sys.executable).parent / "hpcxlt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hpcxlt"]


def arm_overrides(arms: int) -> list[str]:
    """`-o arms=[...]` with the config's first `arms` arms, in the config's own flow syntax."""
    import yaml

    chosen = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["arms"][:arms]
    if any("sampling" in arm for arm in chosen):
        raise SystemExit("--arms: the first arms of phang2020 are single tasks; the mix comes last")
    flow = ", ".join(
        "{name: " + arm["name"] + (f", tasks: [{', '.join(arm['tasks'])}]" if arm.get("tasks") else "") + "}"
        for arm in chosen
    )
    return [f"arms=[{flow}]"]


def staged_site(folder: Path) -> Path:
    """The local site profile with every job starting 30 days from now: submitted, recorded, released, not run."""
    import yaml

    data = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    data["name"] = "local-staged"
    data.setdefault("defaults", {}).setdefault("sbatch_extra", {})["begin"] = "now+30days"
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class Runner:
    """Runs the CLI in a fresh process, sbatch through a logging shim, and times it."""

    def __init__(self, folder: Path):
        real = shutil.which("sbatch")
        if real is None:
            raise SystemExit("sbatch not found: `make slurm-up`, then `source /tmp/hpcxlt-slurm/env.sh`")
        shim_dir = folder / "bin"
        shim_dir.mkdir()
        (shim_dir / "sbatch").write_text(SHIM.format(real=real), encoding="utf-8")
        (shim_dir / "sbatch").chmod(0o755)
        self.log = folder / "sbatch.log"
        self.env = {
            **os.environ,
            "PATH": f"{shim_dir}:{os.environ['PATH']}",
            "HPCXLT_SCALE_SBATCH_LOG": str(self.log),
        }
        self.cli = hpcxlt_command()

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> dict:
        """Wall time of one command, its sbatch calls and the time any sbatch call was in flight."""
        self.log.write_text("")
        clock = time.perf_counter()
        done = subprocess.run([*self.cli, *args], env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - clock
        if done.returncode not in ok:
            raise SystemExit(
                f"hpcxlt {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        calls = [tuple(map(float, line.split())) for line in self.log.read_text().splitlines() if line.strip()]
        return {"s": wall, "sbatch_calls": len(calls), "sbatch_s": union(calls), "stdout": done.stdout}

    def repeated(self, times: int, *args: str, ok: tuple[int, ...] = (0,)) -> dict:
        runs = [self.run(*args, ok=ok) for _ in range(times)]
        best = dict(runs[0])
        best["all_s"] = [round(r["s"], 3) for r in runs]
        best["s"] = statistics.median(r["s"] for r in runs)
        best["sbatch_calls"] = max(r["sbatch_calls"] for r in runs)
        return best


def union(intervals: list[tuple[float, ...]]) -> float:
    """Seconds during which at least one of the (start, end) intervals was open."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def synthesize_results(run_dir: Path, fraction: float) -> dict:
    """Result records and done markers for `fraction` of the eval jobs (whole jobs, spread over the grid),
    through the store's own writers and in the record format evaluation jobs write."""
    from hpcxlt.demo.records import made_up_record
    from hpcxlt.store import RunStore

    store = RunStore(run_dir)
    grid = store.load_plan()
    jobs = grid.stage_jobs("eval")
    step = 1 / fraction if fraction > 0 else 0
    chosen = [jobs[int(i * step)] for i in range(int(len(jobs) * fraction))] if step else []
    rng = random.Random(0)
    by_key = {cell.key: cell for cell in grid.stage_cells("eval")}
    clock = time.perf_counter()
    cells = []
    for job in chosen:
        records = []
        for key in job.cells:
            cell = by_key[key]
            cells.append(cell)
            records.append(made_up_record(store, cell, round(55 + 10 * rng.random(), 4)))
        store.add_results(job.key, records)

    def done(cell) -> None:
        store.mark_done(cell.key, {"splits": ["test"], "scores": {"test": 0.0}, "seconds": 1.0})

    with ThreadPoolExecutor(max_workers=8) as pool:  # fsyncs: the disk, not us
        list(pool.map(done, cells))
    return {
        "eval_jobs_done": len(chosen),
        "eval_cells_done": len(cells),
        "write_s": round(time.perf_counter() - clock, 1),
    }


def left_in_queue(run_dir: Path) -> int:
    from hpcxlt.launch.slurm import queue
    from hpcxlt.store import RunStore

    store = RunStore(run_dir)
    ids = {s.get("job_id") for s in store.states([c.key for c in store.load_plan().cells]).values()} - {None}
    roots = {queue.array_root(j) for j in ids}
    return sum(1 for j, state in queue.alive_jobs().items() if queue.array_root(j) in roots and state != "COMPLETING")


def measure(runner: Runner, folder: Path, site: Path, overrides: list[str], args: argparse.Namespace) -> dict:
    run_dir = folder / "run"
    o = [x for override in overrides for x in ("-o", override)]
    row: dict = {}
    plan = runner.repeated(args.repeats, "plan", str(CONFIG), *o)
    row["plan_s"] = plan["s"]
    submit = runner.run("submit", str(CONFIG), "--run-dir", str(run_dir), "--site", str(site), *o, "--json")
    info = json.loads(submit["stdout"].strip().splitlines()[-1])
    row.update(
        submit_s=submit["s"],
        submit_sbatch_calls=submit["sbatch_calls"],
        submit_sbatch_s=submit["sbatch_s"],
        submit_own_s=submit["s"] - submit["sbatch_s"],
        jobs=info["jobs"],
    )
    row = {"cells": info["cells"], **row}  # a new run directory: every cell of the grid
    try:
        row.update(synthesize_results(run_dir, args.done))
        status = runner.repeated(args.repeats, "status", str(run_dir))
        status_json = runner.repeated(args.repeats, "status", str(run_dir), "--json")
        counts = json.loads(status_json["stdout"])["counts"]
        resume = runner.repeated(args.repeats, "resume", str(run_dir), "--json")
        resumed = json.loads(resume["stdout"].strip().splitlines()[-1])
        aggregate = runner.repeated(args.repeats, "aggregate", str(run_dir), "--partial", "--json")
        row.update(
            status_s=status["s"],
            status_json_s=status_json["s"],
            status_counts=counts,
            resume_s=resume["s"],
            resume_sbatch_calls=resume["sbatch_calls"],
            resume_own_s=resume["s"] - resume["sbatch_s"],
            resume_jobs=resumed["jobs"],
            aggregate_s=aggregate["s"],
            all_s={
                name: result["all_s"]
                for name, result in (
                    ("plan", plan),
                    ("status", status),
                    ("status_json", status_json),
                    ("resume", resume),
                    ("aggregate", aggregate),
                )
            },
        )
    finally:
        cancel = runner.run("cancel", str(run_dir), "--json")
        row["cancel_s"] = cancel["s"]
        deadline = time.time() + 120
        while (left := left_in_queue(run_dir)) and time.time() < deadline:
            time.sleep(2)
        row["left_in_queue"] = left
    return row


def growth(sizes: list[dict]) -> list[dict]:
    """Per step between sizes: each command's time ratio over the cell ratio (1.0: linear)."""
    out = []
    for small, large in zip(sizes, sizes[1:]):
        cells = large["cells"] / small["cells"]
        step = {"from": small["cells"], "to": large["cells"], "cells_x": round(cells, 2)}
        for key in (
            "plan_s",
            "submit_s",
            "submit_own_s",
            "status_s",
            "status_json_s",
            "resume_s",
            "cancel_s",
            "aggregate_s",
        ):
            if small.get(key) and large.get(key):
                step[key.removesuffix("_s") + "_x"] = round(large[key] / small[key], 2)
                step[key.removesuffix("_s") + "_per_cell_x"] = round(large[key] / small[key] / cells, 2)
        out.append(step)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 100], help="seed counts, one grid each")
    parser.add_argument("--arms", type=int, default=5, help="the config's first N arms (default 5)")
    parser.add_argument("--done", type=float, default=0.25, help="share of eval jobs given records + done markers")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read-only command (median kept)")
    parser.add_argument("--workdir", help="where the run directories go (default: the system's temporary folder)")
    args = parser.parse_args()

    from hpcxlt.launch.slurm import queue

    if not queue.available():
        raise SystemExit("no Slurm client: `make slurm-up`, then `source /tmp/hpcxlt-slurm/env.sh`")
    sizes = []
    for seeds in args.seeds:
        folder = Path(tempfile.mkdtemp(prefix="hpcxlt-bench-scale-", dir=args.workdir))
        try:
            runner = Runner(folder)
            site = staged_site(folder)
            overrides = [*arm_overrides(args.arms), f"seeds=[{', '.join(str(s) for s in range(1, seeds + 1))}]"]
            row = {"seeds": seeds, **measure(runner, folder, site, overrides, args)}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        row = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        sizes.append(row)
        print(
            f"{row['cells']:>8,} cells {row['jobs']:>6,} jobs: plan {row['plan_s']:.2f} s, submit {row['submit_s']:.2f} s "
            f"({row['submit_sbatch_calls']} sbatch calls, {row['submit_sbatch_s']:.2f} s in flight; own "
            f"{row['submit_own_s']:.2f} s), status {row['status_s']:.2f} s, status --json {row['status_json_s']:.2f} s, "
            f"resume {row['resume_s']:.2f} s ({row['resume_sbatch_calls']} sbatch calls), cancel {row['cancel_s']:.2f} s, "
            f"aggregate --partial {row['aggregate_s']:.2f} s ({row['eval_cells_done']:,} records); "
            f"left in queue {row['left_in_queue']}",
            flush=True,
        )
    table = growth(sizes)
    for step in table:
        print(
            f"growth {step['from']:,} -> {step['to']:,} cells (x{step['cells_x']}): "
            + ", ".join(f"{k.removesuffix('_x')} x{v}" for k, v in step.items() if k.endswith("_x") and k != "cells_x")
        )
    print(json.dumps({"sizes": sizes, "growth": table, "repeats": args.repeats, "done_share": args.done}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
