"""Power before the GPU-hours are spent: the smallest Δ a comparison can detect, and the seeds an effect needs.

    detectable_effect(seed_sd, seeds, se_examples)  -> Δ (points) found with 80% power at alpha 0.05
    seeds_needed(effect, seed_sd, se_examples)      -> the fewest seeds (2-100) that detect `effect`, or None

The per-seed Δ of two arms has variance 2 seed_sd² (each arm's seeds vary independently), so its mean
over n seeds has se² = 2 seed_sd² / n + se_examples², where se_examples is the test set's shared part
(it does not shrink with seeds). A two-sided t test at level alpha, n - 1 degrees of freedom, finds a
true Δ = d se with the probability of the noncentral t with noncentrality d beyond the critical values;
the detectable effect solves that for `power` (exactly: the textbook shortcut (t_{1-alpha/2} + t_power) se
gives 77% instead of 80% with 3 seeds, which a simulation in the tests showed). Conservative against
the tables' Welch-Satterthwaite degrees of freedom.

`seed_sd` comes from `stats.assumed_seed_sd` or, better, a finished pilot run (`hpcxlt plan CONFIG
--pilot RUN`: each comparison's own per-seed spread and test-set se from the pilot's tables.json).
scipy is imported only when a figure is computed: `plan` stays light.
"""

from __future__ import annotations

import math

MAX_SEEDS = 100


def detectable_effect(seed_sd: float, seeds: int, se_examples: float = 0.0, *, alpha: float = 0.05,
                      power: float = 0.8) -> float | None:
    """The minimum detectable effect in points (None with fewer than 2 seeds: nothing is tested)."""
    from scipy import stats

    from scipy.optimize import brentq

    if seeds < 2:
        return None
    se = math.sqrt(2.0 * seed_sd ** 2 / seeds + se_examples ** 2)
    df = seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(shift: float) -> float:  # power of the two-sided test at Δ = shift * se, minus the goal
        found = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
        return (1.0 if math.isnan(found) else found) - power  # scipy's nct gives NaN far in the tail: power 1

    shortcut = critical + float(stats.t.ppf(power, df))  # the textbook bound, a little short at few df
    return float(brentq(shortfall, 0.0, 3.0 * shortcut) * se)


def seeds_needed(effect: float, seed_sd: float, se_examples: float = 0.0, *, alpha: float = 0.05,
                 power: float = 0.8) -> int | None:
    """The fewest seeds whose detectable effect is at most `effect` (None: not even with MAX_SEEDS, e.g. when the
    test set's se alone is too large)."""
    for seeds in range(2, MAX_SEEDS + 1):
        found = detectable_effect(seed_sd, seeds, se_examples, alpha=alpha, power=power)
        if found is not None and found <= effect:
            return seeds
    return None


__all__ = ["MAX_SEEDS", "detectable_effect", "seeds_needed"]
