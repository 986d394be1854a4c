"""Is an arm better than another? Mean Δ with a confidence interval where the seed is the unit of model variance.

    paired_draws(languages, n_boot, rng, parallel=...) -> Draws: per-seed Δ, and Δ per seed under resampled
                                            test sets (one draw for all languages of a parallel test set)
    combine(draws)                        -> Draws of the mean of several targets' Δ (cross-task summary)
    estimate(draws)                       -> Estimate: Δ, 95% interval, p, and where the uncertainty comes from
    untested(estimate, min_seeds)         -> why a comparison gets no p-value (too few seeds, no finite se)
    welch_satterthwaite(...)              -> the degrees of freedom of the interval (calibrated rule)
    adjust(p_values, method)              -> Holm, Benjamini-Hochberg or -Yekutieli adjusted p-values

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
   (`hpcxlt.evaluate.decompose`); one draw for every language of a parallel test set, and a QA
   paragraph's questions together.
The interval adds both variances, se² = s²_seeds / n + var_boot(Δ), and uses t with the
Welch-Satterthwaite degrees of freedom of that sum (n - 1 where the seeds dominate, more where the test
set does; the seeds' variance taken at its 80% upper bound: `welch_satterthwaite`). With one seed
model variance cannot be estimated: the interval is the test set's alone (normal), labelled so, and
the comparison is not tested (`untested`: no p, no star, not in the family).
The p-value is the two-sided t test of Δ = 0 with the same se. Seeded: the same inputs give the same
interval to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hpcxlt.config.schema import (
    CORRECTIONS,  # Holm (1979): family-wise error; Benjamini-Hochberg (1995), -Yekutieli (2001): FDR
)


@dataclass(frozen=True)
class PairedLanguage:
    """One target language's test set scored under two arms, seeds matched (same order in `a` and `b`)."""

    score: Callable[[np.ndarray], np.ndarray]
    """Sums (..., k) -> score in points (ExampleStats.score)."""
    a: Sequence[np.ndarray]
    """Per seed: the (n_examples, k) per-example rows of the arm."""
    b: Sequence[np.ndarray]
    """Per seed: the rows of the arm it is compared with."""
    keys: Sequence[str] | None = None
    """Per example (row), the key that names it across languages (parallel test sets); None: its position."""
    groups: Sequence[str] | None = None
    """Per example, the cluster it is drawn with (QA: the questions of one paragraph); None: each on its own."""


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

        return {
            "delta": r(self.delta),
            "low": r(self.low),
            "high": r(self.high),
            "p": None if math.isnan(self.p) else float(f"{self.p:.4g}"),
            "se": r(self.se),
            "se_seeds": r(self.se_seeds),
            "se_examples": r(self.se_examples),
            "n_seeds": self.n_seeds,
            "df": None if math.isinf(self.df) else self.df,
            "level": self.level,
        }


def _counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot, n): how often each of n examples is drawn in each of n_boot draws of n with replacement
    (bincount gives the multinomial's counts, several times faster than rng.multinomial)."""
    draw = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(draw.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _keys(lang: PairedLanguage, n: int) -> list[str]:
    keys = list(lang.keys) if lang.keys is not None else [str(i) for i in range(n)]
    if len(keys) != n:
        raise ValueError(f"{len(keys)} example keys for {n} examples")
    return keys


def _units(languages: Sequence[PairedLanguage], parallel: bool) -> tuple[list[np.ndarray], list[int]]:
    """Per language, each row's resampling unit, and how many units each independent draw has.

    A unit is what the bootstrap draws: an example, or a cluster of examples that share their evidence
    (the questions of one QA paragraph: Rajpurkar et al.'s SQuAD and its translations ask several
    questions about each paragraph, and they are not independent). Parallel languages share their units:
    the units are the connected groups of example keys, linking an example's translations (one key) and
    the examples of one cluster in any language. Otherwise each language has its own units and draw."""
    rows_of = [lang.a[0].shape[0] for lang in languages]
    if not parallel:
        out = []
        for lang, n in zip(languages, rows_of):
            if lang.groups is None:
                out.append(np.arange(n))
                continue
            index: dict[str, int] = {}
            out.append(np.array([index.setdefault(str(g), len(index)) for g in lang.groups], dtype=np.int64))
        return out, [int(unit.max()) + 1 if unit.size else 0 for unit in out]
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys = [_keys(lang, n) for lang, n in zip(languages, rows_of)]
    for lang_keys in keys:
        for key in lang_keys:
            parent.setdefault(key, key)
    for number, lang in enumerate(languages):
        if lang.groups is None:
            continue
        first: dict[str, str] = {}
        for key, group in zip(keys[number], lang.groups):
            other = first.setdefault(str(group), key)
            a, b = root(key), root(other)
            if a != b:
                parent[a] = b
    # units numbered in the order their first key appears: without clusters, the order of the keys
    index = {}
    units = []
    for lang_keys in keys:
        units.append(np.array([index.setdefault(root(key), len(index)) for key in lang_keys], dtype=np.int64))
    return units, [len(index)]


def paired_draws(
    languages: Sequence[PairedLanguage],
    n_boot: int,
    rng: np.random.Generator,
    seeds: Sequence[int] = (),
    *,
    parallel: bool = False,
) -> Draws:
    """Per-seed Δ averaged over `languages`, and the same under `n_boot` paired resamples of the test sets.

    Every draw is shared by both arms and every seed (they were scored on the same examples). With
    `parallel` (one test set translated into every language: XNLI, XQuAD, ...) it is also shared by the
    languages: one draw of example keys, each language scored on its rows of the drawn keys, since an
    example that is easy in one language is easy in its translations; drawing each language on its own
    would treat 7-40 translations as independent evidence and shrink the test-set variance (by about
    1 / (1 + (L - 1) r) for L languages correlated r). Otherwise each language is drawn on its own.
    Examples in one cluster (`groups`: a QA paragraph's questions) are drawn together (`_units`)."""
    if not languages:
        raise ValueError("no language to compare")
    n_seeds = len(languages[0].a)
    if n_seeds == 0 or any(len(x.a) != n_seeds or len(x.b) != n_seeds for x in languages):
        raise ValueError("every language needs the same (non-zero) number of seeds under both arms")
    for lang in languages:
        n = lang.a[0].shape[0]
        if any(rows.shape[0] != n for rows in (*lang.a, *lang.b)):
            raise ValueError(
                "the arms' per-example rows of one language differ in length; were they scored on the same test set?"
            )
        if lang.groups is not None and len(lang.groups) != n:
            raise ValueError(f"{len(lang.groups)} cluster labels for {n} examples")
    a_scores, b_scores = np.zeros(n_seeds), np.zeros(n_seeds)
    resampled = np.zeros((n_boot, n_seeds))
    units, sizes = _units(languages, parallel)
    shared = _counts(rng, n_boot, sizes[0]) if parallel else None
    for number, lang in enumerate(languages):
        # how often each row is drawn: its unit's count, in the one shared draw or this language's own
        counts = shared if shared is not None else _counts(rng, n_boot, sizes[number])
        weights = counts[:, units[number]]
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
    return Draws(
        per_seed=a_scores - b_scores, resampled=resampled / k, a_per_seed=a_scores, b_per_seed=b_scores, seeds=ids
    )


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

    return Draws(
        per_seed=np.mean([d.per_seed[columns(d)] for d in draws], axis=0),
        resampled=np.mean([d.resampled[:, columns(d)] for d in draws], axis=0),
        a_per_seed=np.mean([d.a_per_seed[columns(d)] for d in draws], axis=0),
        b_per_seed=np.mean([d.b_per_seed[columns(d)] for d in draws], axis=0),
        seeds=tuple(common),
    )


def estimate(draws: Draws, *, level: float = 0.95) -> Estimate:
    """Δ, a `level` interval and the two-sided p from the per-seed spread and the test-set bootstrap."""
    from scipy import stats  # heavy: scipy

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
    df = welch_satterthwaite(var_seeds, var_examples, n)
    dist = stats.t(df) if math.isfinite(df) else stats.norm()
    half = float(dist.ppf(0.5 + level / 2)) * se
    if math.isfinite(delta) and math.isfinite(se) and se > 0:
        p = float(2 * dist.sf(abs(delta) / se))
    else:
        p = math.nan  # nothing to test against: no p-value rather than p = 0 (see untested())
    return Estimate(
        delta=delta,
        low=delta - half,
        high=delta + half,
        p=p if math.isnan(p) else min(1.0, p),
        se=se,
        se_seeds=math.sqrt(var_seeds) if var_seeds is not None else None,
        se_examples=math.sqrt(var_examples),
        n_seeds=n,
        df=df,
        level=level,
    )


SEED_VARIANCE_BOUND = 0.8
"""The degrees of freedom use the seeds' variance at this upper confidence level (chosen by the calibration)."""


def welch_satterthwaite(var_seeds: float | None, var_examples: float, n_seeds: int) -> float:
    """Degrees of freedom of se² = var_seeds + var_examples (Satterthwaite 1946): the seed part is estimated
    from n - 1 degrees of freedom, the test-set part from a bootstrap over hundreds to thousands of
    examples (taken as exact), so df = (n - 1) (se² / var_seeds)²: n - 1 where the seeds' spread
    dominates, growing towards the normal where the test set's does.

    With 2-3 seeds the seeds' variance is itself very uncertain, and plugging its estimate in is too
    liberal: a by-chance small estimate gives both a small se and many degrees of freedom (9-11% false
    positives at alpha 0.05 with 2 seeds in bench/stats_calibration.py). The seeds' variance here is
    taken at its `SEED_VARIANCE_BOUND` upper confidence bound, var_seeds (n - 1) / chi²_{1-0.8}(n - 1),
    the rule the calibration chose (docs/statistics.md). t on n - 1 alone, the old rule, was very
    conservative where the test set dominates (0-1.3% false positives, little power: issue 21)."""
    from scipy import stats  # heavy: scipy

    if var_seeds is None or n_seeds < 2:
        return math.inf
    if var_seeds <= 0:
        return math.inf if var_examples > 0 else float(n_seeds - 1)
    upper = var_seeds * (n_seeds - 1) / float(stats.chi2.ppf(1 - SEED_VARIANCE_BOUND, n_seeds - 1))
    return float(n_seeds - 1) * ((upper + var_examples) / upper) ** 2


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
    discovery rate, step-up), 'by' (the same under any dependence) or 'none'. A test survives at level alpha when its adjusted p <= alpha."""
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
        # Benjamini-Yekutieli (2001) scales BH by sum_{i<=m} 1/i: the false discovery rate holds under any
        # dependence between the tests (rows sharing arms, targets and seeds are positively dependent, which
        # BH also tolerates (PRDS); BY asks nothing)
        scale = float((1.0 / np.arange(1, m + 1)).sum()) if method == "by" else 1.0
        adjusted = np.minimum.accumulate(scale * m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def aso_epsilon(draws: Draws, *, alpha: float, comparisons: int, bootstrap: int, seed: int) -> float:
    """Almost Stochastic Order over seeds (Dror et al. 2019, "Deep Dominance"; the `deepsig` package): the
    violation ratio ε_min of "the arm's per-seed scores stochastically dominate the other's"; ε_min < 0.5
    means the arm is almost stochastically better (Bonferroni over `comparisons`, as deepsig does)."""
    try:
        from deepsig import aso  # heavy: deepsig
    except ImportError:
        raise RuntimeError(
            "stats.aso is on but the `deepsig` package is not installed: `pip install deepsig`, or set stats.aso: false"
        ) from None
    return float(
        aso(
            draws.a_per_seed.tolist(),
            draws.b_per_seed.tolist(),
            confidence_level=1 - alpha,
            num_comparisons=comparisons,
            num_bootstrap_iterations=bootstrap,
            seed=seed,
            show_progress=False,
        )
    )
