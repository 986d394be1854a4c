"""Simulated comparisons with a known truth, to check that the significance tests keep their promises.

    simulate(rng, scenario, effect) -> (languages: [(treatment rows per seed, baseline rows per seed)],
                                        example keys, truth in points)

One target, one arm against a baseline, `scenario.languages` target languages, `scenario.seeds` seeds.
Each example is scored on the logit scale:

    logit p = level(lang) + difficulty(lang, example) + interaction(arm, lang, example) + model(arm, seed)
              + model(arm, seed, lang) + effect * [arm is the treatment]

- `difficulty` is shared by both arms and every seed (it cancels in a paired Δ); `interaction` is the
  arm x example term, shared by the seeds of an arm, which does not cancel: some examples are easier for
  one arm than for the other. This is the test-set variance that a paired bootstrap must carry.
- A *parallel* test set is one set translated into every language: the difficulty and the interaction
  of an example are correlated `r` between its translations (`sqrt(r) * shared + sqrt(1 - r) * own`).
- `model` is a seed's quality, shared by all its languages; the per-language term is smaller.
- Metrics: accuracy ((correct, 1) rows) or entity F1 ((tp, predicted, gold) rows per sentence, gold
  entities 1 + Poisson(1), each found with p, spurious ones with 0.3 (1 - p)).

The truth is the expected Δ over seeds and over the population of test examples, for the grid's own
languages: E[sigmoid(level + N(0, total variance of the arm) + effect)] by Gauss-Hermite quadrature, so
with effect 0 the truth is exactly 0 (the arms' terms have the same distributions). Demo material: no
real run imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPURIOUS = 0.3
"""Spurious entities per gold entity, times (1 - p), in the F1 world."""


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One cell of the calibration matrix."""

    name: str
    """Stable label, e.g. 'parallel-acc-2000-test-3seeds'."""
    seeds: int
    """Seeds per arm."""
    parallel: bool
    """One test set translated into every language (correlation `r`), or independent test sets."""
    metric: str
    """'accuracy' or 'f1'."""
    examples: int
    """Test examples (sentences) per language."""
    regime: str
    """'seed': the seeds' spread dominates the variance of Δ; 'test': the test set's does."""
    languages: int = 10
    """Target languages."""
    r: float = 0.8
    """Correlation of an example's terms between its translations (parallel sets)."""

    @property
    def spreads(self) -> dict[str, float]:
        """Standard deviations on the logit scale: difficulty, interaction, model, model x language."""
        if self.regime == "seed":
            return {"difficulty": 1.0, "interaction": 0.1, "model": 0.05, "model_lang": 0.01}
        return {"difficulty": 1.0, "interaction": 0.6, "model": 0.005, "model_lang": 0.002}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


def _expected_p(level: float, variance: float) -> float:
    """E[sigmoid(level + Z)], Z ~ N(0, variance)."""
    return float((_WEIGHTS * _sigmoid(level + np.sqrt(variance) * _NODES)).sum() / _WEIGHTS.sum())


def _metric_of_p(metric: str, p: float) -> float:
    """The metric (points) of a corpus whose examples are right with expected probability p."""
    if metric == "accuracy":
        return 100.0 * p
    return 200.0 * p / (p + SPURIOUS * (1.0 - p) + 1.0)  # 2 E[tp] / (E[pred] + E[gold]), per gold entity


def _terms(rng: np.random.Generator, sd: float, languages: int, examples: int, r: float) -> np.ndarray:
    """(languages, examples) normal terms, correlated r between languages."""
    shared = rng.normal(0.0, sd, size=examples)
    own = rng.normal(0.0, sd, size=(languages, examples))
    return np.sqrt(r) * shared[None, :] + np.sqrt(1.0 - r) * own


def _rows(rng: np.random.Generator, metric: str, p: np.ndarray, gold: np.ndarray) -> np.ndarray:
    if metric == "accuracy":
        correct = (rng.random(p.shape) < p).astype(np.float64)
        return np.stack([correct, np.ones_like(correct)], axis=-1)
    tp = rng.binomial(gold, p).astype(np.float64)
    spurious = rng.binomial(gold, SPURIOUS * (1.0 - p)).astype(np.float64)
    return np.stack([tp, tp + spurious, gold.astype(np.float64)], axis=-1)


def score(metric: str):
    """Sums (..., k) -> points, as hpcxlt.evaluate.decompose scores accuracy and entity F1."""
    if metric == "accuracy":
        return lambda sums: 100.0 * sums[..., 0] / sums[..., 1]
    return lambda sums: 200.0 * sums[..., 0] / (sums[..., 1] + sums[..., 2])


def simulate(
    rng: np.random.Generator, scenario: Scenario, effect: float
) -> tuple[list[tuple[list[np.ndarray], list[np.ndarray]]], list[str], float]:
    """Per language, the rows of each seed of the treatment and of the baseline; the example keys (an
    example is the same in every language of a parallel set); the true Δ in points."""
    sd = scenario.spreads
    L, n, S = scenario.languages, scenario.examples, scenario.seeds
    r = scenario.r if scenario.parallel else 0.0
    levels = rng.uniform(-0.3, 1.2, size=L)  # languages from ~43% to ~77% (heteroscedastic)
    difficulty = _terms(rng, sd["difficulty"], L, n, r)
    gold = 1 + rng.poisson(1.0, size=n)  # entities per sentence, the same in its translations
    keys = [f"e{i}" for i in range(n)]
    arms = {}
    for arm, shift in (("treatment", effect), ("baseline", 0.0)):
        interaction = _terms(rng, sd["interaction"], L, n, r)
        model = rng.normal(0.0, sd["model"], size=S)
        per_lang = rng.normal(0.0, sd["model_lang"], size=(S, L))
        logits = (
            levels[None, :, None]
            + difficulty[None]
            + interaction[None]
            + model[:, None, None]
            + per_lang[:, :, None]
            + shift
        )
        arms[arm] = _rows(rng, scenario.metric, _sigmoid(logits), np.broadcast_to(gold, logits.shape))
    languages = [
        ([arms["treatment"][s, lang] for s in range(S)], [arms["baseline"][s, lang] for s in range(S)])
        for lang in range(L)
    ]
    variance = sd["difficulty"] ** 2 + sd["interaction"] ** 2 + sd["model"] ** 2 + sd["model_lang"] ** 2
    truth = float(
        np.mean(
            [
                _metric_of_p(scenario.metric, _expected_p(level + effect, variance))
                - _metric_of_p(scenario.metric, _expected_p(level, variance))
                for level in levels
            ]
        )
    )
    return languages, keys, truth


__all__ = ["Scenario", "score", "simulate"]
