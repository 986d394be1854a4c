"""Reading and checking result records: both layouts, every way a record can be wrong."""

from __future__ import annotations

import json

import pytest

from hpcxlt.aggregate.records import Problem, Record, RecordError, name_of, parse_record, read_records
from tests.aggregate_fixture import record


def test_a_valid_record_parses_and_its_score_is_recomputed_from_the_metrics():
    rec = parse_record(record("mnli", "xnli", 1, "de", "test", 81.2))
    assert (rec.key, rec.split, rec.arm, rec.target, rec.seed, rec.lang) == (
        "eval.mnli.xnli.s1.de",
        "test",
        "mnli",
        "xnli",
        1,
        "de",
    )
    assert rec.score == 81.2 and rec.metrics == {"accuracy": 81.2}


def test_qa_score_follows_the_run_convention():
    raw = record("none", "xquad", 2, "ar", "test", 70.0)  # EM 66, F1 74
    assert parse_record(raw).score == 70.0
    assert parse_record(raw, qa_convention="f1").score == 74.0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"key": "eval.mnli.xnli.s2.de"}, "key"),
        ({"split": "validation"}, "split"),
        ({"seed": True}, "seed"),
        ({"seed": -1}, "seed"),
        ({"metrics": {}}, "metrics"),
        ({"metrics": {"accuracy": "81"}}, "metrics.accuracy"),
        ({"metrics": {"accuracy": float("nan")}}, "metrics.accuracy"),
        ({"score": 0.812}, "score"),  # score on another scale than its metrics
        ({"lang": ""}, "lang"),
        ({"n_examples": -3}, "n_examples"),
    ],
)
def test_bad_fields_are_named(change, field):
    raw = {**record("mnli", "xnli", 1, "de", "test", 81.2), **change}
    with pytest.raises(RecordError, match=field.replace(".", r"\.")):
        parse_record(raw)


def test_a_qa_record_without_exact_match_is_rejected():
    raw = {**record("none", "mlqa", 1, "de", "test", 60.0), "metrics": {"f1": 64.0}}
    with pytest.raises(RecordError, match="exact_match"):
        parse_record(raw)


def test_unknown_target_is_rejected():
    raw = {**record("none", "xnli", 1, "de", "test", 60.0), "target": "sst2", "key": "eval.none.sst2.s1.de"}
    with pytest.raises(RecordError, match="sst2"):
        parse_record(raw)


def test_file_name_gives_key_and_split():
    assert name_of("/x/results/eval.en_lr.panx.s3.sw.dev.json") == ("eval.en_lr.panx.s3.sw", "dev")
    assert name_of("/x/results/notes.json") == (None, None)


def test_truncated_file_is_a_problem_naming_path_and_cell(tmp_path):
    path = tmp_path / "eval.mnli.xnli.s1.de.test.json"
    path.write_text(json.dumps(record("mnli", "xnli", 1, "de", "test", 81.2))[:40])
    [(line, item)] = list(read_records(path))
    assert isinstance(item, Problem) and line is None
    assert item.path == str(path) and "not valid JSON" in item.message
    assert (item.key, item.split) == ("eval.mnli.xnli.s1.de", "test")


def test_record_in_a_file_named_for_another_cell_is_refused(tmp_path):
    path = tmp_path / "eval.mnli.xnli.s1.fr.test.json"
    path.write_text(json.dumps(record("mnli", "xnli", 1, "de", "test", 81.2)))
    [(_, item)] = list(read_records(path))
    assert isinstance(item, Problem) and "file name promises eval.mnli.xnli.s1.fr.test" in item.message


def test_jsonl_shard_reports_bad_lines_by_number_and_keeps_the_rest(tmp_path):
    path = tmp_path / "shard.jsonl"
    good = [json.dumps(record("none", "xnli", 1, lang, "test", 70.0)) for lang in ("de", "en")]
    bad_score = json.dumps({**record("none", "xnli", 1, "sw", "test", 70.0), "score": 7.0})
    path.write_text("\n".join([good[0], bad_score, "", good[1], '{"key": "eval.none.x']) + "\n")
    items = list(read_records(path))
    assert [type(i).__name__ for _, i in items] == ["Record", "Problem", "Record", "Problem"]
    assert [line for line, _ in items] == [1, 2, 4, 5]
    problem = items[1][1]
    assert problem.where == f"{path}:2" and problem.key == "eval.none.xnli.s1.sw" and "score" in problem.message
    assert isinstance(items[2][1], Record) and items[2][1].lang == "en"
