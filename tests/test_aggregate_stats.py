"""Means over seeds and paired tests, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from hpcxlt.aggregate.seed_stats import over_seeds, paired, pvalue


def test_mean_and_sample_std_over_seeds():
    stat = over_seeds([70.0, 72.0, 77.0], 3, allow_partial=False)
    assert stat.mean == pytest.approx(73.0)
    assert stat.std == pytest.approx(math.sqrt(((3**2) + 1 + 16) / 2))  # n-1 in the denominator
    assert (stat.n, stat.n_planned, stat.partial) == (3, 3, False)


def test_one_seed_has_no_std():
    stat = over_seeds([70.0], 1, allow_partial=False)
    assert stat.mean == 70.0 and stat.std is None


def test_fewer_seeds_than_planned_is_empty_unless_partial():
    assert over_seeds([70.0, 72.0], 3, allow_partial=False).mean is None
    stat = over_seeds([70.0, 72.0], 3, allow_partial=True)
    assert stat.mean == 71.0 and stat.partial and stat.n == 2


def test_the_mean_does_not_depend_on_order():
    values = [0.1 * i + 1e-13 * i * i for i in range(1000)]
    forward = over_seeds(values, 1000, allow_partial=False)
    backward = over_seeds(values[::-1], 1000, allow_partial=False)
    assert (forward.mean, forward.std) == (backward.mean, backward.std)


def test_paired_difference_mean_and_spread_by_hand():
    # differences 1, 1, 1, 3: mean 1.5, sample std 1 (no test: the pairs share models)
    test = paired([81.0, 61.0, 83.0, 65.0], [80.0, 60.0, 82.0, 62.0], 4, allow_partial=False)
    assert test.mean == pytest.approx(1.5) and test.std == pytest.approx(1.0) and test.n == 4
    assert set(test.to_json()) == {"mean", "std", "n", "n_planned", "partial"}


def test_missing_pairs_leave_the_test_empty_unless_partial():
    assert paired([1.0, 2.0], [0.0, 0.0], 3, allow_partial=False).mean is None
    assert paired([1.0, 2.0], [0.0, 0.0], 3, allow_partial=True).partial


def test_small_p_values_keep_significant_digits():
    assert pvalue(1.23456e-9) == 1.235e-09
