"""Do the significance tests keep their promises? Error rates and coverage on simulated grids with a known truth.

Simulated grids (`hpcxlt.demo.nullgrid`: a random quality per model shared by all its languages, the
same test examples for every model) are compared arm vs baseline per target, three ways:
- `seed_t`: hpcxlt's method (`hpcxlt.aggregate.significance`): per-seed Δ with t on n - 1 degrees of
  freedom plus the test examples' shared bootstrap variance; Holm-corrected within each grid;
- `pooled_t`: the paired t-test over every (seed, language) pair (what `hpcxlt aggregate` did before);
- `two_level_bootstrap`: a percentile interval from resampling seeds and test examples together.
With no arm effect (null) a method at level 0.05 should call about 5% of the cells significant; with a
planted effect its 95% intervals should cover the true Δ about 95% of the time. Last line: JSON.

    .venv/bin/python bench/stats_calibration.py                      # 200 null + 200 planted grids
    .venv/bin/python bench/stats_calibration.py --grids 50 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcxlt.aggregate.significance import PairedLanguage, adjust, estimate, paired_draws  # noqa: E402
from hpcxlt.demo.nullgrid import BASELINE, simulate_grid  # noqa: E402

ARMS = ("a1", "a2")


def _score(sums: np.ndarray) -> np.ndarray:
    return 100.0 * sums[..., 0] / sums[..., 1]  # accuracy from (correct, 1) rows, as hpcxlt.evaluate.decompose


def _rows(correct: np.ndarray) -> np.ndarray:
    return np.stack([correct, np.ones_like(correct)], axis=-1)


def calibrate(effect: float, *, grids: int, n_boot: int, seed: int, alpha: float = 0.05) -> dict:
    """Rates over `grids` simulated grids where every arm adds `effect` (a probability) to every example."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    truth = 100.0 * effect
    hits = {"seed_t": [], "seed_t_holm": [], "pooled_t": [], "two_level_bootstrap": []}
    covered = {"seed_t": [], "two_level_bootstrap": []}
    for _ in range(grids):
        grid = simulate_grid(rng, {arm: effect for arm in ARMS})
        p_values = []
        for arm in ARMS:
            for target in sorted({key[1] for key in grid}):
                langs = sorted({key[2] for key in grid if key[1] == target})
                pairs = [PairedLanguage(_score, [_rows(c) for c in grid[(arm, target, lang)]],
                                        [_rows(c) for c in grid[(BASELINE, target, lang)]]) for lang in langs]
                draws = paired_draws(pairs, n_boot, rng)
                est = estimate(draws, level=1 - alpha)
                p_values.append(est.p)
                hits["seed_t"].append(est.p < alpha)
                covered["seed_t"].append(est.low <= truth <= est.high)
                # before: every (seed, language) score pair as an independent sample
                a = [float(_score(_rows(c).sum(0))) for lang in langs for c in grid[(arm, target, lang)]]
                b = [float(_score(_rows(c).sum(0))) for lang in langs for c in grid[(BASELINE, target, lang)]]
                hits["pooled_t"].append(bool(stats.ttest_rel(a, b).pvalue < alpha))
                # seeds resampled with the examples: 3 seeds give 10 distinct resamples
                n_seeds = draws.resampled.shape[1]
                pick = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
                star = np.take_along_axis(draws.resampled, pick, axis=1).mean(1)
                low, high = np.quantile(star, [alpha / 2, 1 - alpha / 2])
                hits["two_level_bootstrap"].append(not low <= 0.0 <= high)
                covered["two_level_bootstrap"].append(bool(low <= truth <= high))
        hits["seed_t_holm"] += [p <= alpha for p in adjust(p_values, "holm")]
    return {"effect_points": truth, "grids": grids, "cells": len(hits["seed_t"]),
            "significant": {k: round(float(np.mean(v)), 4) for k, v in hits.items()},
            "coverage": {k: round(float(np.mean(v)), 4) for k, v in covered.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, default=200, help="simulated grids per scenario (default 200)")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap draws per comparison (default 100)")
    parser.add_argument("--effect", type=float, default=0.15, help="planted effect, as a probability (default 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = {"null": calibrate(0.0, grids=args.grids, n_boot=args.bootstrap, seed=args.seed),
              "planted": calibrate(args.effect, grids=args.grids, n_boot=args.bootstrap, seed=args.seed + 1)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    if not args.json:
        print(f"{'scenario':10} {'method':22} {'significant':>12} {'coverage':>9}")
        for scenario in ("null", "planted"):
            for method, rate in result[scenario]["significant"].items():
                cover = result[scenario]["coverage"].get(method)
                print(f"{scenario:10} {method:22} {rate:12.3f} {'' if cover is None else f'{cover:9.3f}'}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
