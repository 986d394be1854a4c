"""`aggregate()` end to end on one rank: files written, gaps listed, bad records skipped, nothing averaged silently."""

from __future__ import annotations

import json

import pytest

from hpcxlt.aggregate.aggregate_run import AggregateError, Options, aggregate
from tests.aggregate_fixture import make_run, record, record_path, row

ARMS = [
    {"name": "none"},
    {"name": "en", "tasks": ["mnli"]},
    {"name": "en_lr", "tasks": ["mnli", "sib200"], "compare_to": "en"},
]
TARGETS = {"xnli": ["en", "de", "sw"], "xquad": ["en", "ar"]}


def _score(arm, target, seed, lang, split):
    return 60.0 + 2 * [a["name"] for a in ARMS].index(arm) + seed + (target == "xquad") * 5


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run", arms=ARMS, targets=TARGETS, seeds=[1, 2, 3], score=_score)


def test_complete_run_writes_every_format_and_the_json_it_returns(run):
    report = aggregate(run.root, Options())
    names = {p.name for p in report.files}
    for table in (
        "task_scores",
        "languages",
        "deltas",
        "significance",
        "xtreme_r",
        "resource",
        "significance_resource",
        "best_arm",
    ):
        assert {f"{table}.md", f"{table}.csv", f"{table}.tex"} <= names
    assert {
        "tables.json",
        "tables.md",
        "missing.csv",
        "deltas_heatmap.png",
        "language_deltas_en.png",
        "language_deltas_en_lr.png",
    } <= names
    assert all(p.exists() and p.parent == run.tables_dir for p in report.files)
    assert json.loads((run.tables_dir / "tables.json").read_text()) == report.data
    assert report.data["complete"] and report.data["missing"] == [] and report.data["records"]["valid"] == 45
    assert (
        row(report.data, "task_scores", arm="en", target="xquad")["score"]["mean"] == 60 + 2 + 2 + 5
    )  # en, mean seed 2, xquad


def test_missing_cell_is_listed_with_its_state_and_never_averaged_over(run):
    record_path(run, "eval.en.xnli.s2.sw", "test").unlink()
    run.set_state("eval.en.xnli.s2.sw", "failed", job_id="123_4")
    report = aggregate(run.root, Options(plots=False))
    [gap] = report.data["missing"]
    assert gap == {
        "key": "eval.en.xnli.s2.sw",
        "split": "test",
        "arm": "en",
        "target": "xnli",
        "seed": 2,
        "lang": "sw",
        "state": "failed",
        "reason": "no record",
    }
    sw = row(report.data, "languages", arm="en", target="xnli", lang="sw")
    assert sw["score"]["mean"] is None and sw["score"]["n"] == 2 and sw["status"] == "incomplete"
    task = row(report.data, "task_scores", arm="en", target="xnli")
    assert task["score"]["mean"] is None and task["score"]["n"] == 2  # seed 2 lacks a language
    assert report.data["tables"]["task_scores"]["partial"] and not report.data["complete"]
    # untouched figures are still there
    assert row(report.data, "task_scores", arm="en", target="xquad")["score"]["mean"] == 69.0
    assert "eval.en.xnli.s2.sw" in (run.tables_dir / "missing.csv").read_text()


def test_partial_mode_averages_what_is_there_and_says_so(run):
    record_path(run, "eval.en.xnli.s2.sw", "test").unlink()
    report = aggregate(run.root, Options(partial=True, plots=False))
    sw = row(report.data, "languages", arm="en", target="xnli", lang="sw")
    assert (sw["score"]["mean"], sw["score"]["n"], sw["score"]["partial"]) == (64.0, 2, True)  # seeds 1 and 3
    task = row(report.data, "task_scores", arm="en", target="xnli")["score"]
    assert task["mean"] == 64.0 and task["n"] == 3 and task["partial"]
    assert report.data["partial_mode"] and report.data["missing"][0]["key"] == "eval.en.xnli.s2.sw"


def test_corrupt_record_is_reported_by_path_and_the_rest_aggregates(run):
    bad = record_path(run, "eval.none.xquad.s1.ar", "test")
    bad.write_bytes(bad.read_bytes()[:50])
    report = aggregate(run.root, Options(plots=False))
    [problem] = report.data["problems"]
    assert problem["path"] == str(bad) and "not valid JSON" in problem["message"]
    [gap] = report.data["missing"]
    assert gap["key"] == "eval.none.xquad.s1.ar" and gap["reason"].startswith(f"bad record {bad}")
    assert report.data["tables"]["deltas"]["partial"]  # every xquad delta needs the baseline
    assert row(report.data, "deltas", arm="en", target="xnli")["delta"]["mean"] == 2.0
    assert row(report.data, "deltas", arm="en", target="xquad")["delta"]["mean"] is None
    assert str(bad) in (run.tables_dir / "tables.md").read_text()


def test_records_of_no_planned_cell_are_listed_and_not_used(run):
    (run.results_dir / "old.jsonl").write_text(json.dumps(record("en", "xnli", 7, "en", "test", 1.0)) + "\n")
    report = aggregate(run.root, Options(plots=False))
    assert [u["key"] for u in report.data["unplanned"]] == ["eval.en.xnli.s7.en"]
    assert row(report.data, "task_scores", arm="en", target="xnli")["score"]["mean"] == 64.0


def test_out_folder_and_plot_arm(run, tmp_path):
    report = aggregate(run.root, Options(out=tmp_path / "elsewhere", plot_arms=("en_lr",)))
    names = {p.name for p in report.files}
    assert "language_deltas_en_lr.png" in names and "language_deltas_en.png" not in names
    assert (tmp_path / "elsewhere" / "tables.json").exists() and not run.tables_dir.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (Options(split="dev"), "evaluates only test"),
        (Options(plot_arms=("mnli",)), "'mnli' is not an arm"),
        (Options(plot_arms=("none",)), "is the baseline"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(run, options, message):
    with pytest.raises(AggregateError, match=message):
        aggregate(run.root, options)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(AggregateError, match="no config.yaml"):
        aggregate(tmp_path, Options())
