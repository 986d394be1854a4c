"""The significance tables from stored test predictions: a large planted gain survives correction, no gain does not,
a missing prediction file leaves its figure empty, and the intervals are the same on every run."""

from __future__ import annotations

import numpy as np
import pytest

from hpcxlt.aggregate.aggregate_run import Options, aggregate
from hpcxlt.evaluate.eval_job import submission_dir
from hpcxlt.evaluate.submission import write_labels, write_predictions
from tests.aggregate_fixture import make_run, row

ARMS = [
    {"name": "none"},
    {"name": "en", "tasks": ["mnli"]},
    {"name": "en_lr", "tasks": ["mnli", "sib200"], "compare_to": "en"},
]
TARGETS = {"xnli": ["en", "de", "sw", "ur", "th"]}  # en_lr trains on en (mnli) and sw (sib200): de, ur, th unseen
SEEDS = [1, 2, 3]
ACCURACY = {"none": 0.55, "en": 0.55, "en_lr": 0.85}  # en: no gain over none; en_lr: +30 points
LABELS = ("entailment", "neutral", "contradiction")


def _write_predictions(store, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    # each model's quality is shared by all its languages (one seed = one model)
    quality = {(arm, seed): rng.normal(0, 0.01) for arm in ACCURACY for seed in SEEDS}
    for lang in TARGETS["xnli"]:
        gold = [LABELS[i] for i in rng.integers(0, 3, size=n)]
        write_labels(store.labels_dir, "xnli", lang, gold)
        for arm, accuracy in ACCURACY.items():
            for seed in SEEDS:
                right = rng.random(n) < accuracy + quality[(arm, seed)]
                pred = [g if ok else LABELS[(LABELS.index(g) + 1) % 3] for g, ok in zip(gold, right)]
                write_predictions(submission_dir(store, arm, seed), "xnli", lang, pred)


def test_a_planted_gain_survives_correction_and_no_gain_does_not(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=ARMS,
        targets=TARGETS,
        seeds=SEEDS,
        score=lambda arm, target, seed, lang, split: 100 * ACCURACY[arm],
    )
    _write_predictions(store)
    report = aggregate(store.root, Options(plots=False))
    unseen = {"languages": "unseen"}
    gain = row(report.data, "significance", comparison="vs none", arm="en_lr", target="xnli", **unseen)
    same = row(report.data, "significance", comparison="vs none", arm="en", target="xnli", **unseen)
    paired = row(report.data, "significance", comparison="vs compare_to", arm="en_lr", target="xnli", **unseen)
    assert gain["status"] == "complete" and gain["seeds"] == 3 and gain["langs"] == 3 and gain["df"] >= 2
    assert 25 < gain["delta"] < 35 and gain["low"] > 0 and gain["significant"]
    assert paired["significant"] and paired["vs"] == "en"
    assert same["langs"] == 4 and same["low"] < 0 < same["high"] and not same["significant"]
    # zero-shot means unseen: what an arm trained on is shown apart, untested
    seen = row(report.data, "significance", comparison="vs none", arm="en_lr", target="xnli", languages="seen: en, sw")
    assert seen["langs"] == 2 and seen["p"] is None and "not zero-shot" in seen["untested"]
    # one family for the research question: the 3 tested rows here + en_lr vs en in the high class
    assert (
        "p adj.: holm over the 4 tests of the research question's family"
        in report.data["tables"]["significance"]["notes"][-2]
    )
    assert gain["family_size"] == 4
    # what a reviewer asks for: per-seed scores by seed id, mean and sd per arm, effect sizes
    assert gain["seed_ids"] == SEEDS and len(gain["a_per_seed"]) == 3
    assert gain["a_mean"] - gain["b_mean"] == pytest.approx(gain["delta"], abs=1e-3)
    assert gain["p_a_beats_b"] == 1.0 and gain["delta_over_seed_sd"] > 5
    per_table = make_run(
        tmp_path / "per-table",
        arms=ARMS,
        targets=TARGETS,
        seeds=SEEDS,
        score=lambda arm, target, seed, lang, split: 100 * ACCURACY[arm],
        stats={"family": "table"},
    )
    _write_predictions(per_table)
    alone = aggregate(per_table.root, Options(plots=False))
    assert "holm over this table's 3 tests" in alone.data["tables"]["significance"]["notes"][-2]
    by_class = {
        r["class"]: r for r in report.data["tables"]["significance_resource"]["rows"] if r["languages"] == "unseen"
    }
    # Joshi classes (hpcxlt.tasks.languages): sw is low (and seen), de, ur, th high
    assert by_class["high"]["langs"] == 3 and by_class["high"]["significant"]
    assert by_class["low"]["langs"] == 0 and "no zero-shot evidence" in by_class["low"]["untested"]
    assert by_class["high"]["delta"] > 20
    again = aggregate(store.root, Options(plots=False))  # seeded: the same intervals to the last digit
    assert again.data["tables"]["significance"] == report.data["tables"]["significance"]

    (submission_dir(store, "en", 2) / "xnli" / "test-de.tsv").unlink()
    holed = aggregate(store.root, Options(plots=False))
    lost = row(holed.data, "significance", comparison="vs none", arm="en", target="xnli", languages="unseen")
    assert lost["status"] == "incomplete" and "delta" not in lost
    partial = aggregate(store.root, Options(plots=False, partial=True))
    used = row(partial.data, "significance", comparison="vs none", arm="en", target="xnli", languages="unseen")
    assert used["status"] == "partial" and used["seeds"] == 2  # de lacks seed 2: every language uses seeds 1 and 3


def test_almost_stochastic_order_over_seeds_when_asked(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=ARMS,
        targets=TARGETS,
        seeds=SEEDS,
        score=lambda arm, target, seed, lang, split: 100 * ACCURACY[arm],
        stats={"aso": True, "bootstrap": 100},
    )
    _write_predictions(store)
    report = aggregate(store.root, Options(plots=False))
    table = report.data["tables"]["significance"]
    gain = row(report.data, "significance", comparison="vs none", arm="en_lr", target="xnli", languages="unseen")
    same = row(report.data, "significance", comparison="vs none", arm="en", target="xnli", languages="unseen")
    paired = row(
        report.data, "significance", comparison="vs compare_to", arm="en_lr", target="xnli", languages="unseen"
    )
    assert gain["aso_epsilon"] < 0.1 and paired["aso_epsilon"] < 0.1  # +30 points in every seed: dominance
    assert 0.0 <= same["aso_epsilon"] <= 1.0  # three seeds of equal arms: anything (ASO is a weak test at n = 3)
    assert any(note.startswith("ASO ε") for note in table["notes"])


def test_one_common_seed_is_descriptive_only_no_p_no_star_not_in_the_family(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=ARMS,
        targets=TARGETS,
        seeds=SEEDS,
        score=lambda arm, target, seed, lang, split: 100 * ACCURACY[arm],
    )
    _write_predictions(store)
    # --partial cuts 'en' vs 'none' down to seed 1: en lacks seeds 2 and 3 in de
    for seed in (2, 3):
        (submission_dir(store, "en", seed) / "xnli" / "test-de.tsv").unlink()
    report = aggregate(store.root, Options(plots=False, partial=True))
    cut = row(report.data, "significance", comparison="vs none", arm="en", target="xnli", languages="unseen")
    assert cut["seeds"] == 1 and cut["p"] is None and cut["p_adjusted"] is None and cut["significant"] is False
    assert "fewer than stats.min_seeds = 2" in cut["untested"] and cut["se_seeds"] is None
    table = report.data["tables"]["significance"]
    # en_lr vs en is cut to seed 1 too (de is unseen for it, in the high class as well): the family is en_lr vs none
    paired = row(
        report.data, "significance", comparison="vs compare_to", arm="en_lr", target="xnli", languages="unseen"
    )
    assert paired["seeds"] == 1 and paired["p"] is None and not paired["significant"]
    assert any("p adj.: holm over the 1 tests of the research question" in note for note in table["notes"])
    # 2 rows cut to one seed, 3 seen-language rows
    assert any(note.startswith("untested: 5 row(s)") for note in table["notes"])
    sig = next(t for t in report.tables if t.name == "significance")
    shown = [r for r in sig.display if r[0] == "vs none" and r[1] == "en" and r[3] == "xnli" and r[4] == "unseen"][0]
    assert shown[-1] == "untested" and "(test set only)" in shown[-4]
    gain = row(report.data, "significance", comparison="vs none", arm="en_lr", target="xnli", languages="unseen")
    assert gain["significant"] and gain["seeds"] == 3


def test_the_appendix_gives_every_language_its_interval(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=ARMS,
        targets=TARGETS,
        seeds=SEEDS,
        score=lambda arm, target, seed, lang, split: 100 * ACCURACY[arm],
    )
    _write_predictions(store)
    report = aggregate(store.root, Options(plots=False))
    rows = report.data["tables"]["significance_languages"]["rows"]
    gain = {r["lang"]: r for r in rows if r["comparison"] == "vs none" and r["arm"] == "en_lr"}
    assert sorted(gain) == sorted(TARGETS["xnli"])
    assert gain["en"]["zero_shot"] is False and gain["sw"]["zero_shot"] is False and gain["de"]["zero_shot"] is True
    for one in gain.values():  # +30 points planted in every language
        assert 0 < one["low"] < one["delta"] < one["high"] and 20 < one["delta"] < 40 and "p" not in one
    # the headline Δ is the mean of the unseen languages' Δs (seeds matched, languages weighed alike)
    headline = [
        r
        for r in report.data["tables"]["significance"]["rows"]
        if r["comparison"] == "vs none" and r["arm"] == "en_lr" and r["languages"] == "unseen"
    ][0]
    unseen = [r["delta"] for r in gain.values() if r["zero_shot"]]
    assert len(unseen) == 3 and headline["delta"] == pytest.approx(sum(unseen) / 3, abs=1e-3)
