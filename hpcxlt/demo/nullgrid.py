"""Simulated result grids with a known truth, to check that the significance tests hold their error rates.

    simulate_grid(rng, effects={'arm': 0.0, ...}, ...) -> {(arm, target, lang): (n_seeds, n_examples) 0/1 array}

What makes real grids hard is built in: every (arm, target, seed) model has its own random quality
shared by all its languages (a seed-level effect), plus a smaller model-by-language effect; all
models are scored on the same test examples, whose difficulty varies; languages differ in level.
Each example is correct with probability base(lang) + difficulty(example) + model + model-by-language
+ effect(arm), which stays inside (0, 1), so the true Δ between two arms is exactly the difference of
their `effects` (in points: x 100), averaged over everything chance draws.
"""

from __future__ import annotations

import numpy as np

BASELINE = "none"


def simulate_grid(rng: np.random.Generator, effects: dict[str, float], *, targets: int = 2, languages: int = 8,
                  examples: int = 300, seeds: int = 3, model_sd: float = 0.025, language_sd: float = 0.01,
                  ) -> dict[tuple[str, str, str], np.ndarray]:
    """Correctness of every example under every arm (the baseline 'none' has effect 0), target, language and seed."""
    arms = {BASELINE: 0.0, **effects}
    out = {}
    for t in range(targets):
        target = f"t{t}"
        model = {arm: rng.normal(0.0, model_sd, size=seeds) for arm in arms}  # shared by all languages of a model
        for lang_index in range(languages):
            lang = f"l{lang_index}"
            base = rng.uniform(0.35, 0.55)
            difficulty = rng.uniform(-0.1, 0.1, size=examples)  # the same test examples for every model
            for arm, effect in arms.items():
                interaction = rng.normal(0.0, language_sd, size=seeds)
                p = base + difficulty[None, :] + (model[arm] + interaction)[:, None] + effect
                if p.min() <= 0 or p.max() >= 1:
                    raise ValueError("simulated probabilities left (0, 1): lower the spreads or the effects")
                out[(arm, target, lang)] = (rng.random((seeds, examples)) < p).astype(np.float64)
    return out
