"""Means over seeds and paired differences, with the completeness rule of the tables.

Nothing here tests: the descriptive tables' pairs (seed x language) share models and are no independent
samples; the tests are `hpcxlt.aggregate.significance`'s.

Rule: a figure needs every cell it is defined over (every planned seed, every planned pair).
With `allow_partial` it uses the cells present and says so (`partial=True`); without, an
incomplete figure is None, so nothing is averaged over a silently smaller set.

Sums use `math.fsum`, which is exactly rounded, so a mean or std does not depend on the order the
values arrive in: a 1-rank and an N-rank aggregation stay bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Spread:
    """Mean and spread of one figure over its units (seeds, or matched pairs), with the completeness rule."""

    mean: float | None
    """Mean over the units used, in points; None when incomplete and partial figures are not allowed (or none)."""
    std: float | None
    """Sample standard deviation (n-1) over the units used; None with fewer than two."""
    n: int
    """Units used."""
    n_planned: int
    """Units the plan has for this figure."""
    partial: bool
    """True when computed from fewer units than planned (only with allow_partial)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": points(self.mean),
            "std": points(self.std),
            "n": self.n,
            "n_planned": self.n_planned,
            "partial": self.partial,
        }


@dataclass(frozen=True, kw_only=True)
class SeedStat(Spread):
    """Mean and spread of one figure over seeds (the units are seeds)."""


@dataclass(frozen=True, kw_only=True)
class PairedTest(Spread):
    """Difference a - b over matched pairs (e.g. the same seed and language under two arms): mean and spread
    (the units are pairs)."""


def points(value: float | None) -> float | None:
    """Points rounded for output (4 decimals is far below seed noise)."""
    return None if value is None else round(value, 4)


def pvalue(value: float | None) -> float | None:
    """p-values keep 4 significant digits (tiny p must not round to 0)."""
    return None if value is None else float(f"{value:.4g}")


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean with an exactly rounded sum (order-independent)."""
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1), two-pass with exactly rounded sums; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    import numpy as np  # heavy: numpy

    deviations = np.asarray(values, dtype=float) - mean(values)
    return math.sqrt(math.fsum((deviations * deviations).tolist()) / (n - 1))


def over_seeds(values: Sequence[float], n_planned: int, *, allow_partial: bool) -> SeedStat:
    """Mean ± std over per-seed values; incomplete (fewer than planned) only with allow_partial."""
    n = len(values)
    usable = n > 0 and (n >= n_planned or allow_partial)
    if not usable:
        return SeedStat(mean=None, std=None, n=n, n_planned=n_planned, partial=False)
    return SeedStat(
        mean=mean(values),
        std=sample_std(values),
        n=n,
        n_planned=n_planned,
        partial=n < n_planned,
    )


def paired(a: Sequence[float], b: Sequence[float], n_planned: int, *, allow_partial: bool) -> PairedTest:
    """Paired difference a - b: mean and spread of the pairs (no test: see the module docstring)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    n = len(a)
    if n == 0 or (n < n_planned and not allow_partial):
        return PairedTest(mean=None, std=None, n=n, n_planned=n_planned, partial=False)
    import numpy as np  # heavy: numpy

    diffs = (np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).tolist()
    return PairedTest(mean=mean(diffs), std=sample_std(diffs), n=n, n_planned=n_planned, partial=n < n_planned)
