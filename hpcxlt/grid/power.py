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
numpy and math only (scipy.stats takes a second to import on a login node); the tests check the
figures against scipy and against a simulation of the planned test.
"""

from __future__ import annotations

import functools
import math

MAX_SEEDS = 100


@functools.lru_cache(maxsize=64)
def _chi_scale(df: int):
    """Midpoints s and probability weights of S = sqrt(V / df), V ~ chi²(df), on a fine grid: the density of S
    is 2 df s f_chi²(df s²). numpy and math only: scipy.stats alone takes a second to import."""
    import numpy as np

    step = 1e-3
    scale = (np.arange(8000) + 0.5) * step  # S past 8 has no mass worth counting at any df >= 1
    v = df * scale**2
    log_pdf = (df / 2 - 1) * np.log(v) - v / 2 - (df / 2) * math.log(2.0) - math.lgamma(df / 2)
    weights = 2.0 * df * scale * np.exp(log_pdf) * step
    return scale, weights / weights.sum()


def _normal_sf(x):
    """1 - Φ(x), elementwise, to 1e-7 (Abramowitz & Stegun 1964, 7.1.26, for erfc; numpy only)."""
    import numpy as np

    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    upper = 0.5 * poly * np.exp(-z * z)  # 1 - Φ(|x|)
    return np.where(x >= 0, upper, 1.0 - upper)


def _power(shift: float, df: int, critical: float) -> float:
    """P(|T| > critical) for T = (Z + shift) / S, Z normal, S = sqrt(V / df), V chi² with df degrees of
    freedom: the noncentral t, integrated over S (scipy's own noncentral t gives NaN far in the tail at
    df = 1, exactly where two seeds need it)."""
    scale, weights = _chi_scale(df)
    tails = _normal_sf(critical * scale - shift) + _normal_sf(critical * scale + shift)
    return float((weights * tails).sum())


def _bisect(fn, low: float, high: float, tol: float = 1e-7) -> float:
    """The root of an increasing fn on [low, high]."""
    while high - low > tol * max(1.0, high):
        middle = (low + high) / 2
        if fn(middle) < 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@functools.lru_cache(maxsize=64)
def critical_t(df: int, alpha: float) -> float:
    """The two-sided critical value of Student's t with df degrees of freedom (the same integral at shift 0)."""
    return _bisect(lambda c: alpha - _power(0.0, df, c), 0.0, 1000.0)


@functools.lru_cache(maxsize=4096)
def detectable_effect(
    seed_sd: float, seeds: int, se_examples: float = 0.0, *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """The minimum detectable effect in points (None with fewer than 2 seeds: nothing is tested)."""
    if seeds < 2:
        return None
    se = math.sqrt(2.0 * seed_sd**2 / seeds + se_examples**2)
    df = seeds - 1
    critical = critical_t(df, alpha)
    high = 2.0 * critical + 4.0
    while _power(high, df, critical) < power:
        high *= 2.0
    return _bisect(lambda shift: _power(shift, df, critical) - power, 0.0, high) * se


def seeds_needed(
    effect: float, seed_sd: float, se_examples: float = 0.0, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """The fewest seeds whose detectable effect is at most `effect` (None: not even with MAX_SEEDS, e.g. when the
    test set's se alone is too large). The detectable effect falls with the seeds: a binary search."""

    def enough(seeds: int) -> bool:
        found = detectable_effect(seed_sd, seeds, se_examples, alpha=alpha, power=power)
        if found is None:  # the search only tries 2..MAX_SEEDS seeds
            raise ValueError(f"{seeds} seeds: no effect is detectable with fewer than 2")
        return found <= effect

    if not enough(MAX_SEEDS):
        return None
    low, high = 2, MAX_SEEDS
    while low < high:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return low


__all__ = ["MAX_SEEDS", "critical_t", "detectable_effect", "seeds_needed"]
