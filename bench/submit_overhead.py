"""Submission overhead of a ~5,000-cell grid: plan, dry run, and a real submission to the local Slurm cluster.

    .venv/bin/python bench/submit_overhead.py [--config configs/phang2020.yaml] [-o KEY=VALUE ...] [--no-slurm]

The grid is the Phang et al. 2020 replication with two seeds and evaluation jobs of 4 languages
(4,684 cells, 1,406 jobs) unless told otherwise. The real submission goes to the cluster named by
SLURM_CONF (`make slurm-up`), held, and is cancelled again right after, so nothing runs; releasing is
one `scontrol release` per array and not timed. The timed part is what `hpcxlt submit` does after
planning: the run directory, what is left to submit, the sbatch calls (arrays that do not wait for each
other go in side by side) and the submission record. Two baselines with the same array sizes, made
straight with `sbatch --hold --wrap true` (also cancelled): one call after the other, and the same
independent batches with as many calls in flight. Each run leaves ~3,000 job records in the controller
for MinJobAge (300 s): a few runs back to back are fine, dozens reach MaxJobCount and sbatch stalls.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OVERRIDES = ["seeds=[1,2]", "eval.languages_per_job=4"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "phang2020.yaml"))
    parser.add_argument("-o", "--override", action="append", default=None)
    parser.add_argument("--site", default=str(ROOT / "slurm" / "sites" / "local.yaml"))
    parser.add_argument("--no-slurm", action="store_true", help="skip the real submission")
    args = parser.parse_args()
    overrides = DEFAULT_OVERRIDES if args.override is None else args.override

    from hpcxlt.grid.experiment import load_experiment
    from hpcxlt.grid.plan import plan
    from hpcxlt.launch.site.profile import load_site
    from hpcxlt.launch.slurm import queue
    from hpcxlt.launch.slurm.pending import pending_work
    from hpcxlt.launch.submit import launch_slurm
    from hpcxlt.store import RunStore

    result: dict = {"config": os.path.relpath(args.config, ROOT), "overrides": overrides}
    t0 = time.perf_counter()
    cfg = load_experiment(args.config, overrides)
    grid = plan(cfg)
    result["plan_s"] = round(time.perf_counter() - t0, 3)
    cells, jobs = len(grid.cells), len(grid.jobs)
    result.update(cells=cells, jobs=jobs)
    site = load_site(args.site)
    import yaml

    raw = yaml.safe_load(open(args.site, encoding="utf-8"))
    print(f"grid: {cells} cells, {jobs} jobs; plan {result['plan_s'] * 1000:.0f} ms")

    with tempfile.TemporaryDirectory(prefix="hpcxlt-bench-") as tmp:
        store = RunStore(Path(tmp) / "dry")
        t0 = time.perf_counter()
        dry = launch_slurm(store, grid, cfg.name, site, raw, dry_run=True, out=io.StringIO())
        seconds = time.perf_counter() - t0
        result["dry_run_s"] = round(seconds, 3)
        result["dry_run_ms_per_cell"] = round(seconds * 1000 / cells, 4)
        result["sbatch_submissions"] = len(dry.submissions)
        print(
            f"dry run: {len(dry.submissions)} sbatch submissions, {seconds:.2f} s, "
            f"{result['dry_run_ms_per_cell']:.3f} ms per cell"
        )

        if args.no_slurm or not queue.available():
            result["slurm"] = None
            print("real submission skipped (no Slurm client or --no-slurm)")
        else:
            from hpcxlt.launch.slurm import submission as slurm

            store = RunStore(Path(tmp) / "real")
            t0 = time.perf_counter()
            store.initialize(cfg, grid)
            pending = pending_work(store, grid, {}, with_aggregate=slurm.aggregate_available())
            rows = slurm.submit(store, grid, site, pending, cfg.name, release=False)
            seconds = time.perf_counter() - t0
            ids = {queue.array_root(j) for row in rows for j in row["job_ids"]}
            t1 = time.perf_counter()
            queue.cancel(ids)
            cancel_s = time.perf_counter() - t1
            left = [j for j in queue.alive_jobs() if queue.array_root(j) in ids]
            # baselines: the same sbatch calls with the same array sizes, straight to sbatch (held, `true`),
            # one after the other, and in the same independent batches with as many in flight as hpcxlt
            import subprocess
            from concurrent.futures import ThreadPoolExecutor

            submitted: list[str] = []  # cancelled whatever happens, so no bench leaves jobs in the queue

            def raw(row: dict) -> str:
                array = [f"--array=0-{row['tasks'] - 1}"] if row["tasks"] > 1 else []
                out = subprocess.run(
                    [
                        "sbatch",
                        "--parsable",
                        "--hold",
                        "-p",
                        site.stage("eval").partition or "low",
                        "-o",
                        "/dev/null",
                        *array,
                        "--wrap",
                        "true",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                submitted.append(out.strip().split(";")[0])
                return submitted[-1]

            by_name = {row["name"]: row for row in rows}
            specs = slurm.plan_specs(store, grid, site, pending)
            try:
                t1 = time.perf_counter()
                for row in rows:
                    raw(row)
                raw_s = time.perf_counter() - t1
                queue.cancel(submitted)
                submitted.clear()
                t1 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=slurm.SBATCH_IN_FLIGHT) as pool:
                    for batch in slurm.independent_batches(specs):
                        list(pool.map(raw, [by_name[spec.name] for spec in batch]))
                raw_parallel_s = time.perf_counter() - t1
            finally:
                queue.cancel(submitted)
            result["slurm"] = {
                "submit_s": round(seconds, 3),
                "ms_per_cell": round(seconds * 1000 / cells, 4),
                "ms_per_job": round(seconds * 1000 / jobs, 4),
                "sbatch_calls": len(rows),
                "sbatch_in_flight": slurm.SBATCH_IN_FLIGHT,
                "cancel_s": round(cancel_s, 3),
                "left_in_queue": len(left),
                "raw_sbatch_s": round(raw_s, 3),
                "vs_raw_sbatch": round(seconds / raw_s, 2),
                "raw_sbatch_in_flight_s": round(raw_parallel_s, 3),
                "vs_raw_sbatch_in_flight": round(seconds / raw_parallel_s, 2),
            }
            print(
                f"slurm: {len(rows)} sbatch calls (held, up to {slurm.SBATCH_IN_FLIGHT} in flight), {seconds:.2f} s "
                f"including the run directory and one submission record, {result['slurm']['ms_per_cell']:.3f} ms "
                f"per cell; cancelled in {cancel_s:.2f} s, {len(left)} left in the queue"
            )
            print(
                f"baseline: the same {len(rows)} submissions as raw `sbatch --hold --wrap true`: {raw_s:.2f} s one "
                f"after the other (hpcxlt: {seconds / raw_s:.2f}x), {raw_parallel_s:.2f} s in the same batches "
                f"with {slurm.SBATCH_IN_FLIGHT} in flight (hpcxlt: {seconds / raw_parallel_s:.2f}x)"
            )
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
