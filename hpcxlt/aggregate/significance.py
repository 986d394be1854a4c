"""Is an arm better than another? Mean Δ with a confidence interval where the seed is the unit of model variance.

    paired_draws(languages, n_boot, rng)  -> Draws: per-seed Δ, and Δ per seed under resampled test sets
    combine(draws)                        -> Draws of the mean of several targets' Δ (cross-task summary)
    estimate(draws)                       -> Estimate: Δ, 95% interval, p, and where the uncertainty comes from
    untested(estimate, min_seeds)         -> why a comparison gets no p-value (too few seeds, no finite se)
    adjust(p_values, method)              -> Holm or Benjamini-Hochberg adjusted p-values

Two sources of chance move a Δ between two arms (Dror et al. 2018, "The Hitchhiker's Guide to Testing
Statistical Significance in NLP"; Reimers & Gurevych 2017 on seeds):
1. *Which models training happened to produce.* Every language of one seed is scored by the same
   model, so the languages are not independent samples: the per-seed Δ (mean over languages) is
   the unit, and with n seeds its mean has n - 1 degrees of freedom. With 3 seeds a bootstrap over
   seeds has only 10 distinct resamples and shrinks the variance by (n - 1) / n; Student's t with
   n - 1 degrees of freedom on the per-seed Δs is the exact small-sample answer when they are normal.
2. *Which test examples the benchmark happened to contain.* A paired bootstrap (Koehn 2004) draws
   each language's test examples with replacement, the same draw for both arms and every seed (they
   were scored on the same examples), and re-scores the official metric on the draw
   (`hpcxlt.evaluate.decompose`).
The interval adds both variances, se² = s²_seeds / n + var_boot(Δ), and uses t with n - 1 degrees
of freedom. With one seed model variance cannot be estimated: the interval is the test set's alone
(normal), labelled so, and the comparison is not tested (`untested`: no p, no star, not in the family).
The p-value is the two-sided t test of Δ = 0 with the same se. Seeded: the same inputs give the same
interval to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from hpcxlt.config.schema import CORRECTIONS  # Holm (1979): family-wise error; Benjamini-Hochberg (1995): FDR


@dataclass(frozen=True)
class PairedLanguage:
    """One target language's test set scored under two arms, seeds matched (same order in `a` and `b`)."""

    score: Callable[[np.ndarray], np.ndarray]
    """Sums (..., k) -> score in points (ExampleStats.score)."""
    a: Sequence[np.ndarray]
    """Per seed: the (n_examples, k) per-example rows of the arm."""
    b: Sequence[np.ndarray]
    """Per seed: the rows of the arm it is compared with."""


@dataclass(frozen=True)
class Draws:
    """Δ = a - b in points, per seed, on the real test sets and on resampled ones."""

    per_seed: np.ndarray
    """(n_seeds,): mean over languages of the per-language Δ, for each seed."""
    resampled: np.ndarray
    """(n_boot, n_seeds): the same under each bootstrap draw of the test examples."""
    a_per_seed: np.ndarray
    """(n_seeds,): the arm's own score per seed (mean over languages); per_seed = a_per_seed - b_per_seed."""
    b_per_seed: np.ndarray
    """(n_seeds,): the other arm's."""
    seeds: tuple[int, ...] = ()
    """The seed ids of the columns, in order (seeds are matched by id, never by position)."""


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Δ with its interval and test."""

    delta: float
    """Mean Δ over seeds (points)."""
    low: float
    """Lower end of the interval."""
    high: float
    """Upper end."""
    p: float
    """Two-sided p of Δ = 0."""
    se: float
    """Standard error of Δ."""
    se_seeds: float | None
    """Its part from model (seed) variance; None with one seed."""
    se_examples: float
    """Its part from test-set sampling."""
    n_seeds: int
    """Seeds."""
    df: float
    """Degrees of freedom of the t distribution (inf: normal)."""
    level: float
    """Coverage of the interval."""

    def to_json(self) -> dict:
        def r(x):
            return None if x is None else round(float(x), 4)

        return {"delta": r(self.delta), "low": r(self.low), "high": r(self.high), "p": None if math.isnan(self.p) else float(f"{self.p:.4g}"),
                "se": r(self.se), "se_seeds": r(self.se_seeds), "se_examples": r(self.se_examples),
                "n_seeds": self.n_seeds, "df": None if math.isinf(self.df) else self.df, "level": self.level}


def paired_draws(languages: Sequence[PairedLanguage], n_boot: int, rng: np.random.Generator,
                 seeds: Sequence[int] = ()) -> Draws:
    """Per-seed Δ averaged over `languages`, and the same under `n_boot` paired resamples of each test set."""
    if not languages:
        raise ValueError("no language to compare")
    n_seeds = len(languages[0].a)
    if n_seeds == 0 or any(len(x.a) != n_seeds or len(x.b) != n_seeds for x in languages):
        raise ValueError("every language needs the same (non-zero) number of seeds under both arms")
    a_scores, b_scores = np.zeros(n_seeds), np.zeros(n_seeds)
    resampled = np.zeros((n_boot, n_seeds))
    for lang in languages:
        n = lang.a[0].shape[0]
        if any(rows.shape[0] != n for rows in (*lang.a, *lang.b)):
            raise ValueError("the arms' per-example rows of one language differ in length; were they scored on "
                             "the same test set?")
        # one draw of the examples for both arms and every seed: they were all scored on these examples
        # how often each example is drawn, per bootstrap draw (n draws with replacement; bincount is the
        # multinomial's counts, several times faster than rng.multinomial for equal probabilities)
        draw = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
        weights = np.bincount(draw.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)
        for s in range(n_seeds):
            a, b = lang.a[s], lang.b[s]
            a_scores[s] += float(lang.score(a.sum(0)))
            b_scores[s] += float(lang.score(b.sum(0)))
            resampled[:, s] += lang.score(weights @ a) - lang.score(weights @ b)
    k = len(languages)
    a_scores, b_scores = a_scores / k, b_scores / k
    ids = tuple(seeds) if seeds else tuple(range(n_seeds))
    if len(ids) != n_seeds:
        raise ValueError(f"{len(ids)} seed ids for {n_seeds} seeds")
    return Draws(per_seed=a_scores - b_scores, resampled=resampled / k, a_per_seed=a_scores, b_per_seed=b_scores,
                 seeds=ids)


def combine(draws: Sequence[Draws]) -> Draws:
    """The mean of several Δs (e.g. over targets: a cross-task summary), seeds matched by id (only the seeds
    every Δ has are kept); test sets drawn independently."""
    if not draws:
        raise ValueError("nothing to combine")
    shapes = {d.resampled.shape[0] for d in draws}
    if len(shapes) != 1:
        raise ValueError(f"draws with different bootstrap counts cannot be combined: {sorted(shapes)}")
    common = [s for s in draws[0].seeds if all(s in d.seeds for d in draws[1:])]
    if not common:
        raise ValueError("the Δs to combine share no seed")

    def columns(d: Draws) -> list[int]:
        return [d.seeds.index(s) for s in common]

    return Draws(per_seed=np.mean([d.per_seed[columns(d)] for d in draws], axis=0),
                 resampled=np.mean([d.resampled[:, columns(d)] for d in draws], axis=0),
                 a_per_seed=np.mean([d.a_per_seed[columns(d)] for d in draws], axis=0),
                 b_per_seed=np.mean([d.b_per_seed[columns(d)] for d in draws], axis=0), seeds=tuple(common))


def estimate(draws: Draws, *, level: float = 0.95) -> Estimate:
    """Δ, a `level` interval and the two-sided p from the per-seed spread and the test-set bootstrap."""
    from scipy import stats

    n = draws.per_seed.shape[0]
    delta = float(draws.per_seed.mean())
    boot = draws.resampled
    var_mean = float(boot.mean(1).var(ddof=1)) if boot.shape[0] > 1 else 0.0
    var_seeds = float(draws.per_seed.var(ddof=1)) / n if n > 1 else None
    if n > 1 and boot.shape[0] > 1:
        # The bootstrap of the seed mean holds two parts: noise particular to each model's answers on the
        # drawn examples (already in the seeds' spread, shrinking as 1/n), and the part all models share
        # (which examples are easy for one arm and hard for the other). Each seed's own bootstrap variance
        # holds the first part whole, so the shared part is var_mean - (var_each - var_mean) / (n - 1):
        # counting only it keeps the model-specific noise from being counted twice.
        var_each = float(boot.var(axis=0, ddof=1).mean())
        var_examples = max(0.0, var_mean - (var_each - var_mean) / (n - 1))
    else:
        var_examples = var_mean  # one seed: the bootstrap is all the evidence there is
    se = math.sqrt(var_examples + (var_seeds or 0.0))
    df = float(n - 1) if n > 1 else math.inf
    dist = stats.t(df) if n > 1 else stats.norm()
    half = float(dist.ppf(0.5 + level / 2)) * se
    if math.isfinite(delta) and math.isfinite(se) and se > 0:
        p = float(2 * dist.sf(abs(delta) / se))
    else:
        p = math.nan  # nothing to test against: no p-value rather than p = 0 (see untested())
    return Estimate(delta=delta, low=delta - half, high=delta + half, p=p if math.isnan(p) else min(1.0, p), se=se,
                    se_seeds=math.sqrt(var_seeds) if var_seeds is not None else None,
                    se_examples=math.sqrt(var_examples), n_seeds=n, df=df, level=level)


def untested(est: Estimate, min_seeds: int) -> str | None:
    """Why an estimate must not be tested (None: it may be). With fewer than `min_seeds` seeds the model
    variance is unknown and a p-value would rest on the test-set bootstrap alone, which is far too narrow
    (one seed: 20-59% false positives at alpha 0.05 in the issue's simulation); a non-finite Δ or a
    zero or non-finite standard error has no test at all."""
    if not (math.isfinite(est.delta) and math.isfinite(est.se)):
        return "Δ or its standard error is not finite (an empty language?)"
    if est.se <= 0:
        return "the standard error is zero (identical predictions?)"
    if est.n_seeds < min_seeds:
        return f"{est.n_seeds} common seed(s), fewer than stats.min_seeds = {min_seeds}: descriptive only"
    return None


def adjust(p_values: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values for a family of tests: 'holm' (step-down, family-wise error), 'bh' (false
    discovery rate, step-up) or 'none'. A test survives at level alpha when its adjusted p <= alpha."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} is not allowed; choose one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0 or method == "none":
        return p.tolist()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def aso_epsilon(draws: Draws, *, alpha: float, comparisons: int, bootstrap: int, seed: int) -> float:
    """Almost Stochastic Order over seeds (Dror et al. 2019, "Deep Dominance"; the `deepsig` package): the
    violation ratio ε_min of "the arm's per-seed scores stochastically dominate the other's"; ε_min < 0.5
    means the arm is almost stochastically better (Bonferroni over `comparisons`, as deepsig does)."""
    try:
        from deepsig import aso
    except ImportError:
        raise RuntimeError("stats.aso is on but the `deepsig` package is not installed: `pip install deepsig`, "
                           "or set stats.aso: false") from None
    return float(aso(draws.a_per_seed.tolist(), draws.b_per_seed.tolist(), confidence_level=1 - alpha,
                     num_comparisons=comparisons, num_bootstrap_iterations=bootstrap, seed=seed, show_progress=False))
