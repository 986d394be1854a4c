"""Significance where the seed is the unit of model variance: calibrated on simulated grids with a known truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcxlt.aggregate.significance import Draws, PairedLanguage, adjust, combine, estimate, paired_draws

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_null_grids_keep_the_error_rate_and_intervals_cover_a_planted_effect():
    """200 null grids (no arm effect, a per-model effect shared by all languages, 3 seeds) and 200 with a planted
    15-point effect, through bench/stats_calibration.py (the figures in docs/statistics.md)."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "stats_calibration.py"), "--grids", "200", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    null, planted = result["null"], result["planted"]
    assert null["cells"] == planted["cells"] == 800
    assert null["significant"]["seed_t_holm"] <= 0.05  # after correction: at most 5% of the cells
    assert null["significant"]["seed_t"] <= 0.07  # before it: about the nominal 5% (800 cells: sd 0.8 points)
    assert null["significant"]["pooled_t"] >= 0.2  # the old pooled (seed, language) t-test: many false alarms
    assert planted["significant"]["seed_t"] >= 0.8 and planted["significant"]["seed_t_holm"] >= 0.5  # detected
    for scenario in (null, planted):
        assert 0.92 <= scenario["coverage"]["seed_t"] <= 0.98  # 95% intervals cover the truth about 95% of the time


def _rows(correct) -> np.ndarray:
    correct = np.asarray(correct, dtype=np.float64)
    return np.stack([correct, np.ones_like(correct)], axis=-1)


def _accuracy(sums: np.ndarray) -> np.ndarray:
    return 100.0 * sums[..., 0] / sums[..., 1]


def test_per_seed_deltas_and_the_interval_are_reproducible():
    rng = np.random.default_rng(1)
    a = [_rows(rng.random(50) < p) for p in (0.7, 0.8, 0.75)]
    b = [_rows(rng.random(50) < p) for p in (0.6, 0.65, 0.7)]
    lang = PairedLanguage(_accuracy, a, b)
    first = paired_draws([lang], 200, np.random.default_rng(7))
    again = paired_draws([lang], 200, np.random.default_rng(7))
    assert np.array_equal(first.resampled, again.resampled)
    expected = [float(_accuracy(x.sum(0)) - _accuracy(y.sum(0))) for x, y in zip(a, b)]
    assert first.per_seed.tolist() == pytest.approx(expected)
    est = estimate(first)
    assert est.delta == pytest.approx(np.mean(expected)) and est.n_seeds == 3 and est.df == 2
    assert est.low < est.delta < est.high and 0 < est.p < 1 and est.se_seeds > 0
    # the t interval on 2 degrees of freedom: half-width = t(0.975, 2) * se
    assert (est.high - est.low) / 2 == pytest.approx(4.302652729911275 * est.se)


def test_one_seed_has_no_model_variance_and_says_so():
    rng = np.random.default_rng(2)
    lang = PairedLanguage(_accuracy, [_rows(rng.random(80) < 0.8)], [_rows(rng.random(80) < 0.5)])
    est = estimate(paired_draws([lang], 300, rng))
    assert est.se_seeds is None and est.df == float("inf") and est.se == est.se_examples > 0
    assert est.to_json()["df"] is None


def test_a_cross_task_mean_averages_the_draws():
    rng = np.random.default_rng(3)
    one = paired_draws([PairedLanguage(_accuracy, [_rows(rng.random(30) < 0.7)] * 2, [_rows(rng.random(30) < 0.5)] * 2)],
                       50, rng)
    two = paired_draws([PairedLanguage(_accuracy, [_rows(rng.random(30) < 0.5)] * 2, [_rows(rng.random(30) < 0.5)] * 2)],
                       50, rng)
    both = combine([one, two])
    assert both.per_seed.tolist() == pytest.approx(((one.per_seed + two.per_seed) / 2).tolist())
    with pytest.raises(ValueError, match="different bootstrap counts"):
        combine([one, paired_draws([PairedLanguage(_accuracy, [_rows([1, 0])], [_rows([0, 0])])], 40, rng)])


def test_combine_matches_seeds_by_id_not_by_position():
    rng = np.random.default_rng(4)
    a = [_rows(rng.random(40) < p) for p in (0.9, 0.5, 0.1)]  # seeds 1, 2, 3 score very differently
    b = [_rows(rng.random(40) < 0.5) for _ in range(3)]
    first = paired_draws([PairedLanguage(_accuracy, a, b)], 50, rng, seeds=(1, 2, 3))
    # the second target has seeds 3 and 1 only (a --partial run), in another order
    second = paired_draws([PairedLanguage(_accuracy, [a[2], a[0]], [b[2], b[0]])], 50, rng, seeds=(3, 1))
    both = combine([first, second])
    assert both.seeds == (1, 3)
    # hand-worked: seed 1's Δ is the same in both targets (same rows), so is seed 3's
    assert both.per_seed.tolist() == pytest.approx([first.per_seed[0], first.per_seed[2]])
    with pytest.raises(ValueError, match="share no seed"):
        combine([first, paired_draws([PairedLanguage(_accuracy, [a[0]], [b[0]])], 50, rng, seeds=(7,))])


def test_mismatched_test_sets_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        paired_draws([PairedLanguage(_accuracy, [_rows([1, 0, 1])], [_rows([1, 0])])], 10, np.random.default_rng(0))


def test_holm_and_benjamini_hochberg_adjustments():
    from scipy.stats import false_discovery_control

    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, then running maximum
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    assert adjust(p, "bh") == pytest.approx(false_discovery_control(p, method="bh").tolist())
    assert adjust(p, "none") == p
    with pytest.raises(ValueError, match="choose one of holm, bh, none"):
        adjust(p, "bonferroni")


def test_zero_or_non_finite_se_is_untested_not_p_zero():
    import math

    from hpcxlt.aggregate.significance import untested

    rng = np.random.default_rng(5)
    same = [_rows(rng.random(50) < 0.6) for _ in range(3)]
    est = estimate(paired_draws([PairedLanguage(_accuracy, same, same)], 100, rng))
    assert est.se == 0 and math.isnan(est.p) and "standard error is zero" in untested(est, 2)
    nan = Draws(per_seed=np.array([np.nan, 1.0]), resampled=np.zeros((100, 2)), a_per_seed=np.zeros(2),
                b_per_seed=np.zeros(2), seeds=(1, 2))
    est = estimate(nan)
    assert math.isnan(est.p) and "not finite" in untested(est, 2)
    one = estimate(paired_draws([PairedLanguage(_accuracy, same[:1], [_rows(rng.random(50) < 0.2)])], 100, rng))
    assert "1 common seed(s)" in untested(one, 2) and untested(one, 1) is None
