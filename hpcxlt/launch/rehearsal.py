"""A rehearsal of a grid (`hpcxlt submit CONFIG --rehearse`): every job of every stage on the same site, each
cut to a minimum, into a run directory of its own; then a verdict per stage, the rates measured on the site
and the real run's GPU-hours from them (docs/rehearsal.md).

The cuts are `-o` overrides of the config's own keys (`cut_overrides`, recorded in rehearsal.json): a few
optimizer steps per training cell (`max_steps`), no periodic checkpoint (`save_every: 0`: the end's and a
forced preemption's only, so the logged windows time steps alone), one dev evaluation at the end where
the config evaluates on dev (`eval_every` = the steps), `keep_last: 1`, and a few examples per language
(`data.max_train_examples`, `data.max_eval_examples`). What has no config key is a rehearsal setting in
rehearsal.json: the first training job of each training stage preempts itself once
(`launch/execute/forced_stop.py`) and must be requeued and resume from its checkpoint.
"""

from __future__ import annotations

import copy
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcxlt.config import TrainConfig
from hpcxlt.config.load import apply_overrides, read_yaml
from hpcxlt.grid.calibrate import MeasuredRates, configured_rate, stage_cost
from hpcxlt.grid.cost import estimate
from hpcxlt.grid.plan import STAGES, Plan
from hpcxlt.launch.manage.status import run_status
from hpcxlt.launch.record import set_aggregate_state
from hpcxlt.launch.site.profile import SiteProfile
from hpcxlt.store import RunStore
from hpcxlt.store.rehearsal import read_rehearsal, write_report

TRAIN_STAGES = ("intermediate", "target")
SUFFIX = ".rehearsal"
CUT_KEYS = ("max_steps", "save_every", "keep_last", "eval_every")


@dataclass(frozen=True, kw_only=True)
class Cuts:
    """How small each cell of a rehearsal is."""

    steps: int = 2
    """Optimizer steps per training cell."""
    eval_examples: int = 16
    """Examples per language and split of every evaluation (and of the training cells' dev evaluation)."""


def default_dir(run_dir: str | os.PathLike) -> Path:
    """Where the rehearsal of RUN_DIR goes unless told: RUN_DIR.rehearsal beside it."""
    path = Path(run_dir)
    return path.with_name(path.name + SUFFIX)


def check_apart(rehearsal_dir: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Refuse a rehearsal directory that is the real run's, or inside it, or holds it."""
    rehearsal, real = Path(rehearsal_dir).resolve(), Path(run_dir).resolve()
    if rehearsal == real or real in rehearsal.parents or rehearsal in real.parents:
        raise ValueError(
            f"the rehearsal's run directory {rehearsal} must lie apart from the real run's {real} "
            f"(default: {default_dir(real)})"
        )


def cut_overrides(raw: dict[str, Any], cuts: Cuts, world: int = 1) -> list[str]:
    """The `-o KEY=VALUE` overrides that cut a config (its raw data, user overrides applied) to a rehearsal.

    Every training section is cut, the per-arm (`arms.N.train`) and per-target (`targets.overrides.TASK`)
    ones where they set a cut key themselves. Training data is capped at what the steps draw (steps x
    micro-batch x accumulation x `world` processes, at least 32); evaluation data at `cuts.eval_examples`.
    """
    if cuts.steps < 1 or cuts.eval_examples < 1:
        raise ValueError("a rehearsal needs at least 1 step and 1 evaluation example")
    out: list[str] = []
    default = TrainConfig()
    batch = 1

    def cut(prefix: str, section: dict[str, Any], base: dict[str, Any] | None) -> None:
        nonlocal batch
        merged = {**(base or {}), **section}
        micro = int(merged.get("micro_batch_size", default.micro_batch_size))
        accum = int(merged.get("grad_accum", default.grad_accum))
        batch = max(batch, micro * accum)
        values = {
            "max_steps": cuts.steps,
            "save_every": 0,
            "keep_last": 1,
            "eval_every": cuts.steps if int(merged.get("eval_every", default.eval_every) or 0) > 0 else 0,
        }
        for key in CUT_KEYS:
            if base is None or key in section:
                if key == "eval_every" and base is None and not values[key]:
                    continue  # the config never evaluates on dev: neither does its rehearsal
                out.append(f"{prefix}.{key}={values[key]}")

    for name in ("intermediate", "target"):
        cut(name, dict(raw.get(name) or {}), None)
    for index, arm in enumerate(raw.get("arms") or []):
        if isinstance(arm, dict) and arm.get("train"):
            cut(f"arms.{index}.train", dict(arm["train"]), dict(raw.get("intermediate") or {}))
    for task, section in ((raw.get("targets") or {}).get("overrides") or {}).items():
        if section:
            cut(f"targets.overrides.{task}", dict(section), dict(raw.get("target") or {}))
    data = raw.get("data") or {}
    train_cap = max(32, cuts.steps * batch * max(1, world))
    for key, cap in (("max_train_examples", train_cap), ("max_eval_examples", cuts.eval_examples)):
        current = data.get(key)
        out.append(f"data.{key}={min(int(current), cap) if current else cap}")
    return out


def rehearsal_overrides(
    config: str | os.PathLike, overrides: list[str], cuts: Cuts, world: int = 1
) -> tuple[list[str], list[str]]:
    """(the user's overrides + the cuts, the cuts alone) for CONFIG."""
    raw = apply_overrides(copy.deepcopy(read_yaml(config)), overrides)
    cut = cut_overrides(raw if isinstance(raw, dict) else {}, cuts, world)
    return [*overrides, *cut], cut


def training_world(site: SiteProfile | None) -> int:
    """Processes of the largest training job (1 without a site)."""
    if site is None:
        return 1
    return max(site.stage(s).nodes * site.stage(s).ntasks_per_node(s) for s in TRAIN_STAGES)


def gpus_per_job(site: SiteProfile | None) -> dict[str, int]:
    """GPUs a job of each stage holds (at least 1: a CPU job's overhead counts as one device's time)."""
    if site is None:
        return {stage: 1 for stage in STAGES}
    return {stage: max(1, site.stage(stage).nodes * site.stage(stage).gpus()) for stage in STAGES}


def forced_jobs(plan: Plan) -> list[str]:
    """The jobs that preempt themselves once: the first training job of each training stage."""
    return [jobs[0].key for stage in TRAIN_STAGES if (jobs := plan.stage_jobs(stage))]


def settings(
    *,
    config: str | os.PathLike,
    overrides: list[str],
    cut: list[str],
    cuts: Cuts,
    real_cfg,
    real_plan: Plan,
    rehearsal_plan: Plan,
    real_run_dir: str | os.PathLike,
    site: SiteProfile | None,
) -> dict[str, Any]:
    """What rehearsal.json's `settings` records, before anything runs."""
    real = {
        cost.stage: {
            "cells": len(real_plan.stage_cells(cost.stage)),
            "jobs": len(real_plan.stage_jobs(cost.stage)),
            "samples": cost.samples,
            "configured_samples_per_second": configured_rate(real_cfg, cost.stage),
            "config_gpu_hours": cost.gpu_hours,
        }
        for cost in estimate(real_cfg, real_plan)
    }
    return {
        "config": str(Path(config).resolve()),
        "overrides": list(overrides),
        "cut_overrides": cut,
        "steps": cuts.steps,
        "eval_examples": cuts.eval_examples,
        "preempt": forced_jobs(rehearsal_plan),
        "real_run_dir": str(Path(real_run_dir).resolve()),
        "site": site.source if site else "local",
        "gpus_per_job": gpus_per_job(site),
        "real": real,
        "created": time.time(),
    }


# -- the report ---------------------------------------------------------------------------------------

KNOWN_FIXES: tuple[tuple[str, str], ...] = (
    (
        r"out of memory|CUDA error: out of memory|OutOfMemoryError",
        "the stage does not fit in GPU memory: lower micro_batch_size (raise grad_accum to keep the batch), "
        "raise zero_stage, or shorten max_length",
    ),
    (
        r"Disk quota exceeded|No space left on device",
        "the file system is full or over quota: lower keep_last, put the run directory and data.cache_dir on "
        "a larger file system, or ask for more quota",
    ),
    (
        r"DataNotFoundError|DataFileError|No such file or directory.*(train|dev|test)",
        "data missing where the nodes read it: run `hpcxlt prepare CONFIG --out DIR` on the login node and "
        "submit with -o data.source=local -o data.root=DIR on the shared file system",
    ),
    (
        r"ConnectionError|ConnectTimeout|Temporary failure in name resolution|offline mode|OfflineModeIsEnabled",
        "the compute nodes cannot reach the hub: `hpcxlt prepare` the data and copy the model to the shared "
        "file system (model.name_or_path=PATH, data.source=local)",
    ),
    (
        r"(OSError|EnvironmentError).*(config\.json|tokenizer|is not a local folder|does not appear to have)",
        "the model cannot be loaded on the nodes: set model.name_or_path to a folder on the shared file system",
    ),
    (
        r"ModuleNotFoundError|ImportError",
        "a package is missing in the jobs' environment: fix the site profile's setup lines "
        "(`hpcxlt doctor --site SITE.yaml` checks them)",
    ),
    (r"Permission denied", "the jobs cannot write there: check the run directory's and the cache's permissions"),
    (
        r"layer -?\d+ does not exist: the model has hidden states",
        "eval.retrieval_layer is not a layer of this model: set it within the hidden states the error names "
        "(XTREME's 14 is for XLM-R Large's 24 layers)",
    ),
    (
        r"NCCL|ProcessGroup|rendezvous|DistNetworkError|dist_timeout",
        "the ranks cannot reach each other: set network_interface and dist_timeout_s in the site profile "
        "(`hpcxlt doctor --site SITE.yaml --nodes N`)",
    ),
    (
        r"TIMEOUT|time limit",
        "the job reached its time limit: raise the stage's time in the site profile",
    ),
)


def known_fix(error: str | None) -> str | None:
    """A fix for an error the rehearsal knows, else None."""
    for pattern, fix in KNOWN_FIXES:
        if error and re.search(pattern, error):
            return fix
    return None


def _train_records(store: RunStore, key: str) -> list[dict[str, Any]]:
    import json

    path = store.train_log_path(key)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _requeue(store: RunStore, job_key: str, key: str) -> dict[str, Any]:
    """Did the forced preemption happen, and did the cell resume from its checkpoint and finish?"""
    events = [r.get("event") for r in _train_records(store, key) if r.get("event")]
    preempted = "preempted" in events
    resumed = preempted and "resume" in events[events.index("preempted") :]
    done = store.done_info(key) or {}
    state = store.state(key)
    return {
        "job": job_key,
        "preempted": preempted,
        "resumed": resumed,
        "resumed_from": done.get("resumed_from"),
        "attempts": state.get("attempts"),
        "requeues": state.get("requeues"),
        "ok": bool(preempted and resumed and done and done.get("resumed_from")),
    }


def _train_rates(store: RunStore, plan: Plan, stage: str, forced: set[str]) -> dict[str, Any] | None:
    steady: list[tuple[float, int, float]] = []  # (seconds, steps, samples/s per process) of windows
    warm: list[tuple[float, int, float]] = []
    walls: list[tuple[float, int]] = []  # (seconds from the job's start to its done marker, steps), unforced jobs
    for job in plan.stage_jobs(stage):
        key = job.cells[0]
        records = _train_records(store, key)
        for prev, rec in zip(records, records[1:], strict=False):
            if rec.get("samples_per_s") is None or not rec.get("steps_in_window") or "time" not in prev:
                continue
            window = (
                float(rec["time"]) - float(prev["time"]),
                int(rec["steps_in_window"]),
                float(rec["samples_per_s"]) / max(1, int(rec.get("world_size") or 1)),
            )
            (steady if prev.get("samples_per_s") is not None else warm).append(window)
        done, state = store.done_info(key), store.state(key)
        if done and state.get("started") and job.key not in forced:
            walls.append((float(done["finished"]) - float(state["started"]), int(done.get("step") or 0)))
    windows = steady or warm
    if not windows:
        return None
    seconds, steps = sum(w[0] for w in windows), sum(w[1] for w in windows)
    per_step = seconds / steps if steps else None
    overheads = [wall - n * per_step for wall, n in walls] if per_step is not None else []
    return {
        "seconds_per_step": per_step,
        "samples_per_second_per_gpu": statistics.median(w[2] for w in windows),
        "steps_measured": steps,
        "warmup_included": not steady,
        "overhead_s_per_job": max(0.0, statistics.median(overheads)) if overheads else None,
        "jobs_measured": len(walls),
    }


def _eval_rates(store: RunStore, plan: Plan) -> dict[str, Any] | None:
    seconds = 0.0
    examples = 0
    overheads = []
    for job in plan.stage_jobs("eval"):
        done = [(key, store.done_info(key)) for key in job.cells]
        if not all(info for _, info in done):
            continue
        work = sum(float(info.get("seconds") or 0.0) for _, info in done if info)
        seconds += work
        examples += sum(int(r.get("n_examples") or 0) for key, _ in done for r in store.cell_records(key, plan))
        started = [store.state(key).get("started") for key in job.cells]
        if all(started):
            wall = max(float(info["finished"]) for _, info in done if info) - min(float(s) for s in started if s)
            overheads.append(max(0.0, wall - work))
    if not examples or seconds <= 0:
        return None
    return {
        "seconds_per_example": seconds / examples,
        "samples_per_second_per_gpu": examples / seconds,
        "examples_measured": examples,
        "overhead_s_per_job": statistics.median(overheads) if overheads else None,
        "jobs_measured": len(overheads),
    }


def build_report(store: RunStore, *, use_queue: bool = True) -> dict[str, Any]:
    """The verdict per stage, the forced requeues, the measured rates and the real run's estimate."""
    data = read_rehearsal(store)
    if data is None:
        raise ValueError(f"{store.root} is not a rehearsal (no rehearsal.json)")
    conf = data["settings"]
    status = run_status(store.root, use_queue=use_queue)
    plan = store.load_plan()
    states: dict[str, str] = status["cell_states"]
    failed_info = {f["key"]: f for f in status["failed"]}
    stages = []
    for stage in STAGES:
        jobs = plan.stage_jobs(stage)
        passed = failed = 0
        failures = []
        for job in jobs:
            cell_states = [states[key] for key in job.cells]
            if all(s == "done" for s in cell_states):
                passed += 1
                continue
            bad = [key for key in job.cells if states[key] in ("failed", "cancelled")]
            if not bad:
                continue
            failed += 1
            info = failed_info.get(bad[0]) or {"error": store.state(bad[0]).get("error"), "log": None}
            error = info.get("error") or f"{states[bad[0]]}"
            failures.append(
                {
                    "job": job.key,
                    "cell": bad[0],
                    "state": states[bad[0]],
                    "error": error,
                    "log": info.get("log") or store.state(bad[0]).get("log"),
                    "fix": known_fix(error),
                }
            )
        verdict = "passed" if passed == len(jobs) else ("failed" if failed else "unfinished")
        stages.append(
            {
                "stage": stage,
                "jobs": len(jobs),
                "passed": passed,
                "failed": failed,
                "unfinished": len(jobs) - passed - failed,
                "verdict": verdict,
                "failures": failures,
            }
        )
    agg = status["aggregate"]
    agg_verdict = {"done": "passed", "failed": "failed", "cancelled": "failed"}.get(agg.get("state"), "unfinished")
    stages.append(
        {
            "stage": "aggregate",
            "jobs": 1,
            "passed": int(agg_verdict == "passed"),
            "failed": int(agg_verdict == "failed"),
            "unfinished": int(agg_verdict == "unfinished"),
            "verdict": agg_verdict,
            "failures": (
                [
                    {
                        "job": "aggregate",
                        "cell": None,
                        "state": agg.get("state"),
                        "error": agg.get("error") or agg.get("note"),
                        "log": agg.get("log"),
                        "fix": known_fix(agg.get("error")),
                    }
                ]
                if agg_verdict == "failed"
                else []
            ),
        }
    )
    forced = set(conf.get("preempt", []))
    requeues = [
        _requeue(store, job, plan.job(job).cells[0])
        for job in conf.get("preempt", [])
        if job in {j.key for j in plan.jobs}
    ]
    rates: dict[str, Any] = {}
    for stage in TRAIN_STAGES:
        measured = _train_rates(store, plan, stage, forced)
        if measured:
            rates[stage] = measured
    measured_eval = _eval_rates(store, plan)
    if measured_eval:
        rates["eval"] = measured_eval
    estimate_rows = _estimate(conf, rates, str(store.root))
    ok = all(s["verdict"] == "passed" for s in stages) and all(r["ok"] for r in requeues)
    return {
        "ok": ok,
        "finished": not any(s["verdict"] == "unfinished" for s in stages),
        "stages": stages,
        "requeues": requeues,
        "rates": rates,
        "estimate": {
            "stages": estimate_rows,
            "gpu_hours": sum(r["gpu_hours"] for r in estimate_rows),
            "config_gpu_hours": sum(r["config_gpu_hours"] for r in estimate_rows),
        },
        "written": time.time(),
    }


def _estimate(conf: dict[str, Any], rates: dict[str, Any], source: str) -> list[dict[str, Any]]:
    measured = MeasuredRates(
        source=source,
        train_samples_per_second={
            s: r["samples_per_second_per_gpu"]
            for s, r in rates.items()
            if s != "eval" and r.get("samples_per_second_per_gpu")
        },
        eval_samples_per_second=(rates.get("eval") or {}).get("samples_per_second_per_gpu"),
        job_overhead_s={s: r["overhead_s_per_job"] for s, r in rates.items() if r.get("overhead_s_per_job")},
        gpus_per_job=conf.get("gpus_per_job", {}),
    )
    return [
        stage_cost(
            stage,
            samples=int(real["samples"]),
            jobs=int(real["jobs"]),
            configured_rate=float(real["configured_samples_per_second"]),
            config_gpu_hours=float(real["config_gpu_hours"]),
            rates=measured,
        ).to_dict()
        for stage in STAGES
        if (real := conf["real"].get(stage))
    ]


def finish(store: RunStore, *, use_queue: bool = True) -> dict[str, Any]:
    """Build the report and write it into rehearsal.json."""
    report = build_report(store, use_queue=use_queue)
    write_report(store, report)
    return report


def aggregate_here(store: RunStore) -> bool:
    """The local executor's aggregation job: `hpcxlt aggregate RUN_DIR` in a process of its own, its outcome
    recorded as the Slurm aggregation job records it (logs/aggregate.state.json, the log in logs/local/)."""
    import subprocess
    import sys

    log_path = store.local_log_path("aggregate")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hpcxlt", "aggregate", str(store.root)]
    set_aggregate_state(store, "running", log=str(log_path), started=time.time())
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        set_aggregate_state(store, "failed", error=f"hpcxlt aggregate exited with {code}: {tail[0][-500:]}")
        return False
    set_aggregate_state(store, "done", finished=time.time(), tables=str(store.tables_json))
    return True


def wait_until_ended(store: RunStore, *, poll_s: float = 10.0, timeout_s: float | None = None) -> bool:
    """Wait until no job of the rehearsal is queued or running (True), or `timeout_s` passed (False)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        status = run_status(store.root)
        waves = status.get("waves")
        busy = (
            status["counts"]["submitted"]
            or status["counts"]["running"]
            or status["aggregate"].get("state") in ("submitted", "running")
            or (waves and waves.get("feeder") and waves.get("feeder_state") not in ("ended", None))
        )
        if not busy:
            return True
        if never_starts(status):
            return True
        if deadline is not None and time.time() > deadline:
            return False
        time.sleep(poll_s)


def never_starts(status: dict[str, Any]) -> bool:
    """Whether all that is left is an aggregation job that can never start: it waits (afterok) for every
    evaluation, no cell is queued or running, and some have failed."""
    counts = status["counts"]
    return (
        status["aggregate"].get("state") == "submitted"
        and not counts["submitted"]
        and not counts["running"]
        and counts["failed"] > 0
    )


def render(report: dict[str, Any], root: str | os.PathLike) -> str:
    """The table `submit --rehearse` and `status` print."""
    lines = [f"rehearsal {root}: {'PASSED' if report['ok'] else ('FAILED' if report['finished'] else 'unfinished')}"]
    header = f"{'stage':<14}{'jobs':>6}{'passed':>8}{'failed':>8}{'left':>6}  verdict"
    lines += [header, "-" * len(header)]
    for s in report["stages"]:
        lines.append(
            f"{s['stage']:<14}{s['jobs']:>6}{s['passed']:>8}{s['failed']:>8}{s['unfinished']:>6}  {s['verdict']}"
        )
    for s in report["stages"]:
        for f in s["failures"][:5]:
            lines.append(f"  FAILED {f['job']}: {f['error']}")
            lines.append(f"    log: {f['log'] or '-'}")
            if f["fix"]:
                lines.append(f"    fix: {f['fix']}")
        if len(s["failures"]) > 5:
            lines.append(f"  ... and {len(s['failures']) - 5} more failed {s['stage']} job(s) (rehearsal.json)")
    for r in report["requeues"]:
        what = (
            f"preempted, requeued and resumed from {Path(r['resumed_from']).name}"
            if r["ok"]
            else ("preempted, not resumed yet" if r["preempted"] else "not preempted yet")
        )
        lines.append(f"forced requeue {r['job']}: {what} (attempts {r['attempts']})")
    rates = report["rates"]
    if rates:
        lines.append("")
        lines.append("measured on this site:")
        for stage in TRAIN_STAGES:
            r = rates.get(stage)
            if r:
                lines.append(
                    f"  {stage:<13}{r['seconds_per_step']:.3f} s/step, {r['samples_per_second_per_gpu']:.1f} "
                    f"examples/s per GPU over {r['steps_measured']} step(s)"
                    + (" (warm-up included)" if r["warmup_included"] else "")
                    + (f"; {r['overhead_s_per_job']:.1f} s per job besides" if r.get("overhead_s_per_job") else "")
                )
        if rates.get("eval"):
            r = rates["eval"]
            lines.append(
                f"  {'eval':<13}{r['seconds_per_example'] * 1000:.2f} ms/example over {r['examples_measured']} examples"
                + (f"; {r['overhead_s_per_job']:.1f} s per job besides" if r.get("overhead_s_per_job") else "")
            )
    est = report["estimate"]
    lines.append("")
    lines.append(f"{'real run':<14}{'samples':>14}{'jobs':>7}{'GPU-h (measured)':>19}{'GPU-h (config)':>17}")
    for row in est["stages"]:
        mark = "" if row["measured"] else " *"
        lines.append(
            f"{row['stage']:<14}{row['samples']:>14,}{row['jobs']:>7}{row['gpu_hours']:>19.1f}{row['config_gpu_hours']:>17.1f}{mark}"
        )
    lines.append(f"{'total':<14}{'':>14}{'':>7}{est['gpu_hours']:>19.1f}{est['config_gpu_hours']:>17.1f}")
    if any(not row["measured"] for row in est["stages"]):
        lines.append("  * not measured: the config's throughput figure")
    lines.append(f"`hpcxlt plan CONFIG --calibrate {root}` plans with these rates")
    return "\n".join(lines) + "\n"
