"""Per-language -> task -> category -> XTREME-R scores, as the official scorer combines them."""

from __future__ import annotations

import pytest

from hpcxlt.evaluate import scoring
from hpcxlt.tasks.registry import get_task

# The ten tasks and a per-language score each, chosen so every task score is easy to check.
SCORE = {"xnli": 80.0, "xcopa": 60.0, "udpos": 70.0, "panx": 50.0, "tatoeba": 90.0, "mewslix": 40.0, "lareqa": 30.0}


def _metrics(task: str, value: float) -> dict[str, float]:
    metric = get_task(task).metric
    if metric == "accuracy":
        return {"accuracy": value}
    if metric == "seqeval_f1":
        return {"f1": value, "precision": value, "recall": value}
    if metric == "map_at_20":
        return {"map_at_20": value}
    return {"exact_match": value - 10, "f1": value + 10}  # QA: (EM+F1)/2 == value, F1 alone == value + 10


def _all_languages(task: str, value: float) -> dict[str, dict[str, float]]:
    return {lang: _metrics(task, value) for lang in get_task(task).languages}


def _full() -> dict[str, dict[str, dict[str, float]]]:
    per_task = {task: _all_languages(task, value) for task, value in SCORE.items()}
    per_task.update(
        {
            "xquad": _all_languages("xquad", 70.0),
            "mlqa": _all_languages("mlqa", 60.0),
            "tydiqa": _all_languages("tydiqa", 50.0),
        }
    )
    return per_task


def test_the_ten_tasks_are_the_registry_targets():
    from hpcxlt.tasks.registry import target_tasks

    assert scoring.XTREME_R_TASKS == tuple(spec.name for spec in target_tasks())


def test_categories_are_those_of_xtreme_r():
    assert scoring.category_tasks() == {
        "classification": ("xnli", "xcopa"),
        "structured_prediction": ("udpos", "panx"),
        "qa": ("xquad", "mlqa", "tydiqa"),
        "retrieval": ("tatoeba", "mewslix", "lareqa"),
    }


def test_language_score_per_metric_and_qa_convention():
    assert scoring.language_score("xnli", {"accuracy": 81.2}) == 81.2
    assert scoring.language_score("panx", {"f1": 60.0, "precision": 70.0, "recall": 52.5}) == 60.0
    assert scoring.language_score("mewslix", {"map_at_20": 33.0}) == 33.0
    assert scoring.language_score("mlqa", {"exact_match": 50.0, "f1": 70.0}) == 60.0
    assert scoring.language_score("mlqa", {"exact_match": 50.0, "f1": 70.0}, qa_convention="f1") == 70.0
    with pytest.raises(ValueError, match="qa_convention: 'em' is not allowed; choose one of em_f1, f1"):
        scoring.language_score("mlqa", {"exact_match": 50.0, "f1": 70.0}, qa_convention="em")
    with pytest.raises(ValueError, match="lack 'accuracy'"):
        scoring.language_score("xnli", {"f1": 1.0})


def test_qa_task_score_is_mean_of_average_em_and_average_f1():
    # two languages... of mlqa's seven, with the rest equal: avg EM and avg F1 then (EM+F1)/2
    per_language = {lang: {"exact_match": 40.0, "f1": 60.0} for lang in get_task("mlqa").languages}
    per_language["en"] = {"exact_match": 75.0, "f1": 85.0}
    result = scoring.task_result("mlqa", per_language)
    n = len(per_language)
    avg_em = (75.0 + 40.0 * (n - 1)) / n
    avg_f1 = (85.0 + 60.0 * (n - 1)) / n
    assert result.averages == pytest.approx({"exact_match": avg_em, "f1": avg_f1})
    assert result.score == pytest.approx((avg_em + avg_f1) / 2)
    assert scoring.task_score("mlqa", per_language, qa_convention="f1") == pytest.approx(avg_f1)
    assert result.category == "qa"


def test_task_score_needs_every_language_unless_partial():
    per_language = _all_languages("xnli", 80.0)
    per_language["de"] = {"accuracy": 50.0}
    n = len(per_language)
    assert scoring.task_score("xnli", per_language) == pytest.approx((80.0 * (n - 1) + 50.0) / n)
    del per_language["sw"]
    with pytest.raises(ValueError, match="task 'xnli': no metrics for sw"):
        scoring.task_result("xnli", per_language)
    result = scoring.task_result("xnli", per_language, partial=True)
    assert result.missing_languages == ("sw",)
    assert result.score == pytest.approx((80.0 * (n - 2) + 50.0) / (n - 1))
    with pytest.raises(ValueError, match="qu not among its languages"):
        scoring.task_result("xnli", {**per_language, "qu": {"accuracy": 1.0}}, partial=True)


def test_xtreme_r_score_is_the_mean_of_the_ten_task_scores():
    result = scoring.summarize(_full())
    expected = {**SCORE, "xquad": 70.0, "mlqa": 60.0, "tydiqa": 50.0}
    assert {task: r.score for task, r in result.tasks.items()} == pytest.approx(expected)
    assert list(result.tasks) == list(scoring.XTREME_R_TASKS)
    assert result.categories == pytest.approx(
        {"classification": 70.0, "structured_prediction": 60.0, "qa": 60.0, "retrieval": 160.0 / 3}
    )
    assert result.xtreme_r == pytest.approx(sum(expected.values()) / 10)
    assert result.partial is False
    # F1-only QA raises each QA task by 10 points here, so the overall score by 3.
    assert scoring.summarize(_full(), qa_convention="f1").xtreme_r == pytest.approx(result.xtreme_r + 3.0)


def test_a_missing_task_leaves_its_category_and_the_overall_score_empty_unless_partial():
    per_task = _full()
    del per_task["lareqa"]
    result = scoring.summarize(per_task)
    assert result.xtreme_r is None and result.categories["retrieval"] is None
    assert result.categories["qa"] == pytest.approx(60.0) and result.partial is False
    partial = scoring.summarize(per_task, partial=True)
    assert partial.partial is True
    assert partial.categories["retrieval"] == pytest.approx((90.0 + 40.0) / 2)
    assert partial.xtreme_r == pytest.approx(sum(r.score for r in partial.tasks.values()) / 9)
    with pytest.raises(ValueError, match="pawsx: not XTREME-R tasks"):
        scoring.summarize({"pawsx": {}})


def test_to_json_has_tasks_categories_and_overall_score():
    data = scoring.summarize(_full()).to_json()
    assert set(data) >= {"tasks", "categories", "xtreme_r"}
    assert data["tasks"]["xnli"]["languages"]["de"] == {"accuracy": 80.0}
    assert data["tasks"]["xnli"]["score"] == pytest.approx(80.0)
    assert data["categories"]["classification"] == pytest.approx(70.0)


def test_language_metrics_dispatches_to_the_official_metric_of_each_task():
    assert scoring.language_metrics("tatoeba", "de", ["1", "2"], ["1", "3"]) == {"accuracy": 50.0}
    assert scoring.language_metrics("xcopa", "qu", [0, 1], [0, 1]) == {"accuracy": 100.0}
    assert scoring.language_metrics("panx", "de", [["B-PER"]], [["B-PER"]])["f1"] == 100.0
    # xquad uses the SQuAD normaliser even in German (article 'die' kept), mlqa the German one.
    golds, preds = {"q": ["die Mauer"]}, {"q": "Mauer"}
    assert scoring.language_metrics("xquad", "de", golds, preds)["exact_match"] == 0.0
    assert scoring.language_metrics("mlqa", "de", golds, preds)["exact_match"] == 100.0
    assert scoring.language_metrics("lareqa", "ar", {"q": ["a", "b"]}, {"q": ["a", "x", "b"]}) == {
        "map_at_20": pytest.approx(100 * (1 + 2 / 3) / 2)
    }


def test_dev_metrics_score_intermediate_tasks_by_their_own_metric():
    from hpcxlt.evaluate.scoring import dev_metrics, dev_score
    from hpcxlt.tasks.registry import get_task

    ccg = get_task("ccg")  # Phang et al. 2020: CCG tagging scored by tag accuracy, not whole sentences
    gold, pred = [["N", "S\\NP"], ["NP", "N", "N"]], [["N", "NP"], ["NP", "N", "N"]]
    assert dev_score(ccg, dev_metrics(ccg, "en", gold, pred)) == pytest.approx(80.0)
    ner = get_task("masakhaner2")
    metrics = dev_metrics(ner, "sw", [["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert dev_score(ner, metrics) == pytest.approx(0.0)  # the one entity's span is wrong
    squad = get_task("squad")
    metrics = dev_metrics(squad, "en", {"q": ["the black cat"]}, {"q": "cat"})  # articles are dropped: 1 of 2 tokens
    assert dev_score(squad, metrics) == pytest.approx((0 + 200 / 3) / 2)  # EM 0, F1 = 2 * 1 * 0.5 / 1.5
    assert dev_score(squad, metrics, qa_convention="f1") == pytest.approx(200 / 3)
    xnli = get_task("xnli")  # an XTREME-R task scores exactly as the zero-shot evaluation does
    assert dev_metrics(xnli, "en", ["a", "b"], ["a", "a"]) == {"accuracy": 50.0}
