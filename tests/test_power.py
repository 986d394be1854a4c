"""The planner's power figures: hand-worked from t tables, and checked by simulating the test they plan for."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hpcxlt.grid.power import detectable_effect, seeds_needed
from tests.paths import CONFIGS, ROOT


def test_detectable_effect_against_the_textbook_bound():
    # 3 seeds, seed sd 1 per arm: se = sqrt(2 / 3) = 0.8165; t(2) quantiles 0.975: 4.303, 0.8: 1.061 (tables):
    # the shortcut (4.303 + 1.061) se = 4.38 is a little short of 80% power at so few degrees of freedom
    assert 4.38 < detectable_effect(1.0, 3) < 4.38 * 1.1
    # the test set's part does not shrink with seeds: 5 seeds, sd 0.5, se_examples 0.3 -> se = sqrt(0.1 + 0.09)
    assert detectable_effect(0.5, 5, 0.3) == pytest.approx((2.776 + 0.941) * 0.19**0.5, rel=0.03)
    assert detectable_effect(1.0, 1) is None


def test_the_detectable_effect_is_found_80_percent_of_the_time():
    """Simulate the planned experiment at the detectable effect: a t test on the per-seed Δs (whose sd is
    sqrt(2) seed_sd) rejects about 80% of the time."""
    from scipy import stats

    rng = np.random.default_rng(0)
    for seeds, sd in ((2, 1.0), (3, 1.0), (5, 0.7)):
        effect = detectable_effect(sd, seeds)
        deltas = rng.normal(effect, np.sqrt(2) * sd, size=(20000, seeds))
        p = stats.ttest_1samp(deltas, 0.0, axis=1).pvalue
        assert np.mean(p < 0.05) == pytest.approx(0.80, abs=0.015)


def test_seeds_needed_is_the_first_count_that_detects_the_effect():
    n = seeds_needed(1.0, 1.0)
    assert detectable_effect(1.0, n) <= 1.0 < detectable_effect(1.0, n - 1)
    assert seeds_needed(1.0, 1.0, se_examples=0.5) is None  # the test set alone makes 1 point undetectable


def test_plan_prints_power_lines_from_the_assumed_sd_or_a_pilot(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(CONFIGS / "demo.yaml"), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    row = json.loads(out.stdout)["comparisons"][0]
    power = row["power"]["xnli"]
    assert power["source"] == "assumed" and power["seed_sd"] == 1.0
    assert power["detectable_effect"] == pytest.approx(detectable_effect(1.0, 2), abs=1e-3)
    # a pilot: its tested row's se_seeds (per-seed Δ sd / sqrt(n)) and se_examples
    pilot = tmp_path / "pilot"
    (pilot / "tables").mkdir(parents=True)
    rows = [
        {
            "comparison": row["kind"],
            "arm": row["arm"],
            "vs": row["vs"],
            "target": "xnli",
            "languages": "unseen",
            "se_seeds": 0.5,
            "n_seeds": 2,
            "se_examples": 0.2,
        }
    ]
    (pilot / "tables" / "tables.json").write_text(json.dumps({"tables": {"significance": {"rows": rows}}}))
    out = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(CONFIGS / "demo.yaml"), "--json", "--pilot", str(pilot)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    power = json.loads(out.stdout)["comparisons"][0]["power"]["xnli"]
    assert power["source"] == "pilot" and power["seed_sd"] == pytest.approx(0.5)  # 0.5 sqrt(2) / sqrt(2)
    assert power["detectable_effect"] == pytest.approx(detectable_effect(0.5, 2, 0.2), abs=1e-3)
    text = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(CONFIGS / "demo.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "power before spending GPU-hours" in text and "stats.assumed_seed_sd" in text


def test_critical_values_and_power_equal_scipys_where_scipy_is_accurate():
    from scipy import stats

    from hpcxlt.grid import power

    for df in (1, 2, 4, 9, 30):
        assert power.critical_t(df, 0.05) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-4)
    for df, shift in ((2, 3.0), (4, 2.5), (9, 1.0)):
        c = stats.t.ppf(0.975, df)
        expected = stats.nct.sf(c, df, shift) + stats.nct.cdf(-c, df, shift)
        assert power._power(shift, df, c) == pytest.approx(expected, abs=1e-5)
