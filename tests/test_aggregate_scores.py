"""The score book: records held against the plan (planned, missing, unplanned) and per-seed task scores."""

from __future__ import annotations

import pytest

from tests.aggregate_fixture import make_run, score_book

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]


@pytest.fixture
def run(tmp_path):
    # seed 2 of 'en' has no German record at all
    return make_run(
        tmp_path / "run",
        arms=ARMS,
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda arm, t, seed, lang, split: (
            None if (arm, seed, lang) == ("en", 2, "de") else 70.0 + seed + (lang == "de") * 4
        ),
    )


def test_planned_languages_and_seeds_come_from_the_plan(run):
    book = score_book(run)
    assert book.planned[("en", "xnli")].seeds == (1, 2)
    assert book.planned[("en", "xnli")].langs == ("en", "de")
    assert book.baseline == "none"


def test_a_seed_missing_a_language_has_no_task_score_unless_partial(run):
    strict = score_book(run).task_by_seed("test", "en", "xnli")
    assert set(strict) == {1} and strict[1].value == 73.0 and not strict[1].partial
    loose = score_book(run, allow_partial=True).task_by_seed("test", "en", "xnli")
    assert loose[2].value == 72.0 and loose[2].partial


def test_missing_lists_the_planned_cell_with_its_recorded_state(run):
    run.set_state("eval.en.xnli.s2.de", "running", job_id="77")
    [gap] = score_book(run).missing("test", run)
    assert (gap["key"], gap["state"], gap["reason"]) == ("eval.en.xnli.s2.de", "running", "no record")


def test_lang_pairs_match_seed_and_language(run):
    a, b, planned = score_book(run).lang_pairs("test", "en", "none", "xnli", ["en", "de"])
    assert planned == 4 and len(a) == len(b) == 3  # (2, de) has no 'en' record
    assert [x - y for x, y in zip(a, b)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("convention", ["em_f1", "f1"])
def test_task_and_xtreme_r_scores_equal_the_official_scorer(tmp_path, convention):
    """The book's means from per-language scores == hpcxlt.evaluate.scoring.summarize on the metrics."""
    import random

    from hpcxlt.evaluate.scoring import XTREME_R_TASKS, summarize, task_result
    from hpcxlt.tasks.registry import get_task
    from tests.aggregate_fixture import metrics_for

    rng = random.Random(7)
    scores = {}

    def score(arm, target, seed, lang, split):
        return scores.setdefault((arm, target, seed, lang), round(40 + 50 * rng.random(), 3))

    targets = {task: list(get_task(task).languages[:3]) for task in XTREME_R_TASKS}
    store = make_run(
        tmp_path / convention, arms=ARMS, targets=targets, seeds=[1, 2], score=score, qa_convention=convention
    )
    book = score_book(store, allow_partial=True)  # the plan evaluates 3 languages per task
    for seed in (1, 2):
        per_task = {
            t: {lang: metrics_for(t, scores[("en", t, seed, lang)]) for lang in langs} for t, langs in targets.items()
        }
        official = summarize(per_task, qa_convention=convention, partial=True)
        ours = book.suite_by_seed("test", {t: "en" for t in targets})[seed]
        assert ours["xtreme_r"].value == pytest.approx(official.xtreme_r, abs=1e-9)
        for category, value in official.categories.items():
            assert ours[category].value == pytest.approx(value, abs=1e-9)
        for t in targets:
            expected = task_result(t, per_task[t], qa_convention=convention, partial=True).score
            assert book.task_by_seed("test", "en", t)[seed].value == pytest.approx(expected, abs=1e-9)
