"""`hpcxlt plan CONFIG`: what an experiment would run and what it would cost, before submitting anything."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from hpcxlt.cli import UserError, add_override_argument
from hpcxlt.data.sizes import train_rows
from hpcxlt.grid.budget import allocate
from hpcxlt.grid.comparisons import unseen_counts
from hpcxlt.grid.cost import estimate
from hpcxlt.grid.experiment import load_experiment
from hpcxlt.grid.plan import STAGES, arm_languages, plan
from hpcxlt.grid.power import detectable_effect, seeds_needed
from hpcxlt.io import read_json
from hpcxlt.store import RunStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan",
        help="show the cells, job arrays and GPU-hour estimate of an experiment (submits nothing)",
        description="Expand CONFIG into its grid (intermediate -> target -> eval) and print counts per stage, "
        "the job arrays `submit` would create, and a GPU-hour estimate. Imports no torch/deepspeed/submitit.",
    )
    parser.add_argument("config", help="experiment YAML file")
    add_override_argument(parser)
    parser.add_argument("--cells", action="store_true", help="also list every cell key")
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="a folder written by `hpcxlt prepare`: its row counts give the realized example budgets "
        "(default: the config's local data)",
    )
    parser.add_argument(
        "--pilot",
        metavar="RUN",
        default=None,
        help="a finished (aggregated) run of the same comparisons: its per-seed spread and test-set "
        "se replace stats.assumed_seed_sd in the power lines",
    )
    parser.add_argument(
        "--effect",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="the effect whose seed count the power lines report (default 1.0 point)",
    )
    parser.add_argument(
        "--site",
        metavar="SITE.yaml",
        default=None,
        help="a Slurm site profile: GPU memory per training stage against its gpu_memory_gb, disk against its "
        "disk_quota_gb, and the makespan on its gpus (docs/resources.md)",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        metavar="N",
        help="GPUs the sweep may use at once, for the makespan (default: the site's gpus)",
    )
    parser.add_argument(
        "--calibrate",
        metavar="REHEARSAL_RUN",
        default=None,
        help="GPU-hours at the rates a rehearsal (`submit --rehearse`) measured on the site, per-job overhead "
        "included, instead of the config's cost figures (docs/rehearsal.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    cfg = load_experiment(args.config, args.override)
    if args.data is not None and not Path(args.data).expanduser().is_dir():
        raise UserError(f"--data {args.data}: no such folder (it takes a folder written by `hpcxlt prepare`)")
    grid = plan(cfg)
    costs = {c.stage: c for c in (_calibrated(cfg, grid, args.calibrate) if args.calibrate else estimate(cfg, grid))}
    counts = grid.counts()
    arrays: list[dict[str, Any]] = []
    for stage in STAGES:
        jobs = grid.stage_jobs(stage)
        if not jobs:
            continue
        upstream = sorted({grid.cell(dep).stage for job in jobs for dep in job.deps})
        arrays.append(
            {
                "stage": stage,
                "tasks": len(jobs),
                "cells": counts[stage]["cells"],
                "depends_on": upstream,
                "dependency": "element-wise (aftercorr/afterok per task)" if upstream else "none",
            }
        )
    summary: dict[str, Any] = {
        "experiment": cfg.name,
        "description": cfg.description,
        "arms": [arm.name for arm in cfg.arms],
        "targets": list(cfg.targets.tasks),
        "seeds": list(cfg.seeds),
        "counts": counts,
        "total_cells": len(grid.cells),
        "arrays": arrays,
        "gpu_hours": {stage: round(costs[stage].gpu_hours, 2) for stage in STAGES},
        "gpu_hours_total": round(sum(c.gpu_hours for c in costs.values()), 2),
        "gpu_hours_from": f"rates measured by {args.calibrate}" if args.calibrate else "the config's cost figures",
    }
    pilot = pilot_spreads(args.pilot) if args.pilot else {}
    summary["comparisons"] = [
        {
            "kind": comp.kind,
            "arm": comp.arm,
            "vs": comp.other,
            "unseen_languages": counts,
            "seen": moved,
            "power": power_lines(cfg, comp, pilot, args.effect),
        }
        for comp, counts, moved in unseen_counts(cfg)
    ]
    budgets, budget_source = example_budgets(cfg, args.data)
    if budgets:
        summary["examples"] = {"source": budget_source, "arms": budgets}
    resources = None
    if args.site is not None or args.gpus is not None:
        resources = _resources(cfg, grid, args.site, args.gpus)
        summary["resources"] = resources.to_json()
    if args.cells:
        summary["cells"] = [cell.key for cell in grid.cells]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"experiment {cfg.name}: {cfg.description}".rstrip(": "))
    print(f"  arms: {', '.join(summary['arms'])}")
    print(f"  targets: {', '.join(summary['targets'])}   seeds: {', '.join(map(str, cfg.seeds))}")
    print()
    header = f"{'stage':<14}{'cells':>8}{'jobs':>8}{'samples':>16}{'GPU-hours':>12}  depends on"
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        deps = next((", ".join(a["depends_on"]) for a in arrays if a["stage"] == stage), "") or "-"
        print(
            f"{stage:<14}{counts[stage]['cells']:>8}{counts[stage]['jobs']:>8}{costs[stage].samples:>16,}"
            f"{costs[stage].gpu_hours:>12.1f}  {deps}"
        )
    print("-" * len(header))
    print(f"{'total':<14}{len(grid.cells):>8}{len(grid.jobs):>8}{'':>16}{summary['gpu_hours_total']:>12.1f}")
    if args.calibrate:
        print(f"GPU-hours from the {summary['gpu_hours_from']} (per-job overhead included)")
    print()
    print("job arrays `hpcxlt submit` would create (one array task per job; dependencies element-wise):")
    for array in arrays:
        print(
            f"  {array['stage']:<13} {array['tasks']:>6} tasks   after: {', '.join(array['depends_on']) or 'nothing'}"
        )
    print("  aggregate          1 task    after: every eval task (MPI gather)")
    if summary["comparisons"]:
        _print_comparisons(summary["comparisons"], list(cfg.targets.tasks))
        _print_power(summary["comparisons"], list(cfg.targets.tasks), len(cfg.seeds), cfg.stats.alpha)
    if budgets:
        _print_budgets(budgets, budget_source)
    if resources is not None:
        print()
        print("\n".join(resources.text_lines()))
    if args.cells:
        print()
        print("\n".join(summary["cells"]))
    return 0


def _calibrated(cfg, grid, rehearsal: str):
    """The estimate at a rehearsal's measured rates (`grid/calibrate.py`)."""
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.grid.calibrate import as_stage_costs, calibrated_estimate
    from hpcxlt.store import RunDirError
    from hpcxlt.store.rehearsal import measured_rates

    try:
        return as_stage_costs(calibrated_estimate(cfg, grid, measured_rates(rehearsal)))
    except RunDirError as err:
        raise UserError(f"--calibrate {rehearsal}: {err}") from None


def _resources(cfg, grid, site_path: str | None, gpus: int | None):
    """GPU memory per training stage, disk and makespan on a site (`hpcxlt/launch/resources.py`)."""
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch import resources
    from hpcxlt.launch.site.profile import load_site

    if gpus is not None and gpus < 1:
        raise UserError(f"--gpus {gpus}: must be >= 1")
    site = load_site(site_path) if site_path is not None else None
    return resources.plan_resources(cfg, grid, site, gpus)


def example_budgets(cfg, prepared: str | None) -> tuple[dict, str]:
    """Per arm with `examples` budgets: {task: {budget, realized, per_language}} and the realized total."""

    arms = [arm for arm in cfg.arms if arm.examples]
    if not arms:
        return {}, ""
    pairs = {(task, lang) for arm in arms for task in arm.examples for lang in arm_languages(cfg, arm.name)[task]}
    rows, source = train_rows(cfg, sorted(pairs), prepared)
    out = {}
    for arm in arms:
        tasks: dict[str, dict[str, Any]] = {}
        total: int | None = 0
        for task, budget in arm.examples.items():
            sizes = {lang: rows[(task, lang)] for lang in arm_languages(cfg, arm.name)[task]}
            known = {lang: size for lang, size in sizes.items() if size is not None}
            per_language = allocate(budget, known) if len(known) == len(sizes) else None
            realized = sum(per_language.values()) if per_language is not None else None
            tasks[task] = {"budget": budget, "realized": realized, "per_language": per_language}
            total = None if realized is None or total is None else total + realized
        out[arm.name] = {"tasks": tasks, "realized_total": total, "control": arm.control, "compare_to": arm.compare_to}
    return out, source


def pilot_spreads(run: str) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    """(kind, arm, vs, target) -> (seed sd of one arm, test-set se) from a pilot run's tested zero-shot rows:
    the per-seed Δ's sd is se_seeds sqrt(n); one arm's is that over sqrt(2)."""

    path = RunStore(run).tables_json
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        raise UserError(f"--pilot {run}: cannot read {path} ({err}); run `hpcxlt aggregate {run}` first") from None
    out = {}
    for row in data.get("tables", {}).get("significance", {}).get("rows", []):
        if row.get("languages", "unseen") != "unseen" or row.get("se_seeds") is None:
            continue
        seed_sd = row["se_seeds"] * math.sqrt(row["n_seeds"]) / math.sqrt(2.0)
        out[(row["comparison"], row["arm"], row["vs"], row["target"])] = (seed_sd, row.get("se_examples") or 0.0)
    if not out:
        raise UserError(f"--pilot {run}: {path} has no tested significance row with two or more seeds")
    return out


def power_lines(cfg, comp, pilot: dict, effect: float) -> dict:
    """Per target: the detectable effect with the config's seeds and the seeds `effect` needs."""

    out = {}
    for target in cfg.targets.tasks:
        seed_sd, se_examples = pilot.get((comp.kind, comp.arm, comp.other, target), (cfg.stats.assumed_seed_sd, 0.0))
        source = "pilot" if (comp.kind, comp.arm, comp.other, target) in pilot else "assumed"
        mde = detectable_effect(seed_sd, len(cfg.seeds), se_examples, alpha=cfg.stats.alpha)
        out[target] = {
            "source": source,
            "seed_sd": round(seed_sd, 4),
            "se_examples": round(se_examples, 4),
            "detectable_effect": None if mde is None else round(mde, 3),
            "seeds_for_effect": seeds_needed(effect, seed_sd, se_examples, alpha=cfg.stats.alpha),
            "effect": effect,
        }
    return out


def _print_power(rows: list[dict], targets: list[str], seeds: int, alpha: float) -> None:
    print()
    effect = next(iter(rows[0]["power"].values()))["effect"]
    print(
        f"power before spending GPU-hours: the Δ (points) each comparison detects with 80% power at alpha {alpha} "
        f"with {seeds} seed(s), and [the seeds a {effect:g}-point effect needs]:"
    )
    width = max(len(f"{r['arm']} {r['kind']} {r['vs']}") for r in rows) + 2
    print(f"  {'comparison':<{width}}" + "".join(f"{t:>16}" for t in targets))
    for r in rows:
        cells = []
        for t in targets:
            p = r["power"][t]
            mde = "untested" if p["detectable_effect"] is None else f"{p['detectable_effect']:.2f}"
            need = ">100" if p["seeds_for_effect"] is None else str(p["seeds_for_effect"])
            cells.append(f"{mde} [{need}]")
        print(f"  {r['arm'] + ' ' + r['kind'] + ' ' + r['vs']:<{width}}" + "".join(f"{c:>16}" for c in cells))
    sources = {p["source"] for r in rows for p in r["power"].values()}
    if "assumed" in sources:
        sd = next(p["seed_sd"] for r in rows for p in r["power"].values() if p["source"] == "assumed")
        print(
            f"  from stats.assumed_seed_sd = {sd:g} point(s) per arm and no test-set term (an assumption: "
            "docs/statistics.md); `--pilot RUN` uses a finished run's own spread and test-set se"
        )


def _print_comparisons(rows: list[dict], targets: list[str]) -> None:
    print()
    print("tested comparisons: target languages neither arm trains on (the zero-shot rows; the rest shown apart):")
    width = max(len(f"{r['arm']} {r['kind']} {r['vs']}") for r in rows) + 2
    print(f"  {'comparison':<{width}}" + "".join(f"{t:>9}" for t in targets) + "  seen (moved out)")
    for r in rows:
        label = f"{r['arm']} {r['kind']} {r['vs']}"
        counts = "".join(f"{r['unseen_languages'][t]:>9}" for t in targets)
        print(f"  {label:<{width}}{counts}  {', '.join(r['seen']) or '-'}")
    empty = [(r, t) for r in rows for t in targets if not r["unseen_languages"][t]]
    for r, t in empty:
        print(f"  note: {r['arm']} {r['kind']} {r['vs']} has no unseen {t} language: its {t} row stays empty")


def _print_budgets(budgets: dict, source: str) -> None:
    print()
    print(f"multilingual training examples per arm (arms[].examples; rows from {source}):")
    print(f"  {'arm':<16}{'task':<18}{'budget':>9}{'realized':>10}  per language")
    for arm, entry in budgets.items():
        for task, figures in entry["tasks"].items():
            realized = "?" if figures["realized"] is None else f"{figures['realized']:,}"
            langs = ", ".join(f"{lang} {n:,}" for lang, n in (figures["per_language"] or {}).items())
            print(f"  {arm:<16}{task:<18}{figures['budget']:>9,}{realized:>10}  {langs}")
    budgeted = {arm: sum(f["budget"] for f in entry["tasks"].values()) for arm, entry in budgets.items()}
    print("  budget totals: " + ", ".join(f"{arm} {n:,}" for arm, n in budgeted.items()))
    totals = {arm: entry["realized_total"] for arm, entry in budgets.items()}
    print("  realized totals: " + ", ".join(f"{arm} {'?' if n is None else f'{n:,}'}" for arm, n in totals.items()))
    for arm, entry in budgets.items():
        other = entry["control"]
        if other in totals and totals[arm] is not None and totals[other] is not None:
            verdict = "equal" if totals[arm] == totals[other] else "NOT equal: the control is not matched"
            print(f"  {arm} vs its control {other}: {totals[arm]:,} vs {totals[other]:,} examples, {verdict}")
