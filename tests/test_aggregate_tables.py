"""The tables against figures computed by hand from known records."""

from __future__ import annotations

import math

import pytest

from hpcxlt.aggregate.tables import best_arm, deltas, language_scores, resource, task_scores, xtreme_r
from hpcxlt.evaluate.scoring import XTREME_R_TASKS
from hpcxlt.tasks.registry import get_task
from tests.aggregate_fixture import make_run, row, rows, score_book, table_json

# --- one target, two languages (sw is low-resource, en high), two seeds, three arms ---------------

HAND = {
    ("none", 1, "en"): 80.0,
    ("none", 1, "sw"): 60.0,
    ("none", 2, "en"): 82.0,
    ("none", 2, "sw"): 62.0,
    ("en", 1, "en"): 81.0,
    ("en", 1, "sw"): 61.0,
    ("en", 2, "en"): 83.0,
    ("en", 2, "sw"): 65.0,
    ("en_lr", 1, "en"): 81.0,
    ("en_lr", 1, "sw"): 64.0,
    ("en_lr", 2, "en"): 82.0,
    ("en_lr", 2, "sw"): 68.0,
}
ARMS = [
    {"name": "none"},
    {"name": "en", "tasks": ["mnli"]},
    {"name": "en_lr", "tasks": ["mnli", "sib200"], "compare_to": "en"},
]


@pytest.fixture
def hand(tmp_path):
    return make_run(
        tmp_path / "hand",
        arms=ARMS,
        targets={"xnli": ["en", "sw"]},
        seeds=[1, 2],
        score=lambda arm, target, seed, lang, split: HAND[(arm, seed, lang)],
    )


def test_task_scores_are_mean_and_std_over_seeds_of_the_language_mean(hand):
    data = table_json(task_scores(score_book(hand), "test"))
    none = row(data, "task_scores", arm="none")["score"]
    assert (none["mean"], none["std"], none["n"]) == (71.0, round(math.sqrt(2), 4), 2)
    en = row(data, "task_scores", arm="en")["score"]  # seeds: 71, 74
    assert (en["mean"], en["std"]) == (72.5, round(math.sqrt(4.5), 4))
    assert row(data, "task_scores", arm="en_lr")["score"]["mean"] == 73.75  # seeds: 72.5, 75
    assert not data["tables"]["task_scores"]["partial"]


def test_language_table_has_each_language_with_its_resource_class(hand):
    data = table_json(language_scores(score_book(hand), "test"))
    sw = row(data, "languages", arm="en", lang="sw")
    assert sw["resource"] == "low" and sw["score"]["mean"] == 63.0 and sw["score"]["std"] == round(math.sqrt(8), 4)
    assert row(data, "languages", arm="none", lang="en")["resource"] == "high"
    assert len(rows(data, "languages")) == 6


def test_deltas_pair_seeds_for_the_task_score_and_seed_language_cells_for_the_tests(hand):
    data = table_json(deltas(score_book(hand), "test"))
    en = row(data, "deltas", arm="en", target="xnli")
    assert (en["delta"]["mean"], en["delta"]["std"], en["delta"]["n"]) == (1.5, round(math.sqrt(0.5), 4), 2)
    # pairs (seed, lang): 1, 1, 1, 3 -> mean 1.5, std 1, t = 3 on 3 df; Wilcoxon exact 2/16
    assert (en["pairs"]["mean"], en["pairs"]["std"], en["pairs"]["n"]) == (1.5, 1.0, 4)
    assert "t_p" not in en["pairs"] and "wilcoxon_p" not in en["pairs"]  # pairs of one seed share a model: no test
    assert row(data, "deltas", arm="en_lr", target="xnli")["delta"]["mean"] == 2.75
    assert rows(data, "deltas", arm="none") == []


def test_resource_table_splits_the_multilingual_gain_by_class(hand):
    data = table_json(resource(score_book(hand), "test"))
    low = row(data, "resource", arm="en_lr", target="xnli", resource="low")
    assert low["compare_to"] == "en" and low["languages"] == 1
    assert (low["vs_compare"]["mean"], low["vs_compare"]["std"], low["vs_compare"]["n"]) == (3.0, 0.0, 2)
    assert "t_p" not in low["vs_compare"]  # tested in significance_resource, from the predictions
    assert low["arm_vs_none"]["mean"] == 5.0 and low["compare_vs_none"]["mean"] == 2.0
    high = row(data, "resource", arm="en_lr", target="xnli", resource="high")
    assert high["vs_compare"]["mean"] == -0.5 and high["arm_vs_none"]["mean"] == 0.5
    assert high["compare_vs_none"]["mean"] == 1.0
    assert rows(data, "resource", target="all") == []  # no row pools different tasks' metrics


def test_xtreme_r_needs_all_ten_tasks_unless_partial(hand):
    data = table_json(xtreme_r(score_book(hand), "test"))
    none = row(data, "xtreme_r", arm="none")
    assert none["xtreme_r"]["mean"] is None and none["classification"]["mean"] is None  # xcopa is not a target
    assert none["retrieval"] is None  # no retrieval task at all: not applicable
    assert data["tables"]["xtreme_r"]["partial"]
    data = table_json(xtreme_r(score_book(hand, allow_partial=True), "test"))
    none = row(data, "xtreme_r", arm="none")
    assert none["xtreme_r"]["mean"] == 71.0 and none["xtreme_r"]["partial"]


def test_best_arm_by_test_score_is_flagged_as_oracle(hand):
    table = best_arm(score_book(hand), "test")
    data = table_json(table)
    xnli = row(data, "best_arm", target="xnli")
    assert (xnli["best_arm"], xnli["selected_by"]) == ("en_lr", "test (oracle)")
    assert xnli["delta"]["mean"] == 2.75
    assert any("oracle" in note for note in table.notes)


# --- all ten XTREME-R tasks, one language each -----------------------------------------------------


def _ten(arm, target, seed, lang, split):
    i = XTREME_R_TASKS.index(target)
    if split == "dev":  # on dev, b looks best everywhere
        return 50.0 + i + {"none": 0, "a": 1, "b": 3}[arm]
    bonus = {"none": 0, "a": 2 * (i < 5), "b": 2 * (i >= 5)}[arm]
    return 60.0 + i + (seed - 1) + bonus


def _ten_run(tmp_path, splits=("test",), qa_convention="em_f1"):
    arms = [{"name": "none"}, {"name": "a", "tasks": ["mnli"]}, {"name": "b", "tasks": ["squad"]}]
    targets = {task: [get_task(task).languages[0]] for task in XTREME_R_TASKS}
    return make_run(
        tmp_path / f"ten-{'-'.join(splits)}-{qa_convention}",
        arms=arms,
        targets=targets,
        seeds=[1, 2],
        score=_ten,
        splits=splits,
        qa_convention=qa_convention,
    )


def test_xtreme_r_score_and_category_means(tmp_path):
    data = table_json(xtreme_r(score_book(_ten_run(tmp_path)), "test"))
    none = row(data, "xtreme_r", arm="none")
    # seed 1: 60 + mean(0..9) = 64.5, seed 2: 65.5
    assert (none["xtreme_r"]["mean"], none["xtreme_r"]["std"]) == (65.0, round(math.sqrt(0.5), 4))
    assert none["classification"]["mean"] == 61.0  # xnli, xcopa: 60.5 / 61.5
    assert none["structured_prediction"]["mean"] == 63.0
    assert none["qa"]["mean"] == 65.5  # xquad, mlqa, tydiqa: 65 / 66
    assert none["retrieval"]["mean"] == 68.5  # 68 / 69
    assert row(data, "xtreme_r", arm="a")["xtreme_r"]["mean"] == 66.0
    assert not data["tables"]["xtreme_r"]["partial"]


def test_qa_convention_f1_changes_only_qa(tmp_path):
    data = table_json(xtreme_r(score_book(_ten_run(tmp_path, qa_convention="f1")), "test"))
    none = row(data, "xtreme_r", arm="none")
    assert none["qa"]["mean"] == 69.5 and none["classification"]["mean"] == 61.0
    assert none["xtreme_r"]["mean"] == 66.2  # three tasks 4 points higher: +1.2


def test_best_arm_per_target_beats_every_single_arm_under_oracle_selection(tmp_path):
    data = table_json(best_arm(score_book(_ten_run(tmp_path)), "test"))
    chosen = {r["target"]: r["best_arm"] for r in rows(data, "best_arm") if r["target"] != "XTREME-R"}
    assert chosen == {t: ("a" if i < 5 else "b") for i, t in enumerate(XTREME_R_TASKS)}
    suite = row(data, "best_arm", target="XTREME-R", best_arm="best per target")
    assert suite["score"]["mean"] == 67.0
    single = row(data, "best_arm", target="XTREME-R", best_arm="best single arm: a")  # a and b tie: first in config
    assert single["score"]["mean"] == 66.0
    assert row(data, "best_arm", target="XTREME-R", best_arm="none")["score"]["mean"] == 65.0


def test_best_arm_is_chosen_on_dev_records_when_the_run_has_them(tmp_path):
    table = best_arm(score_book(_ten_run(tmp_path, splits=("dev", "test"))), "test")
    data = table_json(table)
    picked = [r for r in rows(data, "best_arm") if r["target"] != "XTREME-R"]
    assert {r["best_arm"] for r in picked} == {"b"} and {r["selected_by"] for r in picked} == {"dev"}
    assert row(data, "best_arm", target="XTREME-R", best_arm="best per target")["score"]["mean"] == 66.0
    assert not any("oracle selection" in note for note in table.notes)
