"""The column-wise reader gives exactly what the record-by-record path gives: scores, problems, duplicates."""

import json
import random

import pytest

from hpcxlt.aggregate import columns
from hpcxlt.aggregate.gather import gather_records
from hpcxlt.aggregate.mpi_world import World

ONE = World(rank=0, size=1)


def record(arm="mnli", target="xnli", seed=1, lang="de", split="test", **fields):
    metrics = fields.pop("metrics", {"accuracy": 71.25})
    score = fields.pop("score", next(iter(metrics.values())) if metrics else 0.0)
    base = {
        "key": f"eval.{arm}.{target}.s{seed}.{lang}",
        "arm": arm,
        "target": target,
        "seed": seed,
        "lang": lang,
        "split": split,
        "metrics": metrics,
        "score": score,
        "n_examples": 100,
        "config_hash": "abc",
    }
    return {**base, **fields}


def qa(em, f1, convention="em_f1", **fields):
    score = (em + f1) / 2 if convention == "em_f1" else f1
    return record(target="xquad", metrics={"exact_match": em, "f1": f1}, score=score, **fields)


GOOD = [
    record(),
    record(lang="sw", seed=2, metrics={"accuracy": 80}),  # an integer metric
    qa(60.123456789, 70.987654321, lang="ar"),
    qa(50.0, 61.5, convention="f1", lang="hi"),  # written under the other QA convention: accepted
    record(target="panx", lang="yo", metrics={"f1": 55.5, "precision": 50.0, "recall": 61.0}),
    record(target="tatoeba", lang="fr", metrics={"accuracy": 90.0}, reused_from="/other/run"),  # an extra field
    record(target="lareqa", lang="el", metrics={"map_at_20": 33.3}, split="dev"),
]

BAD = [
    {**record(lang="fr"), "key": "eval.mnli.xnli.s1.es"},  # key does not match its fields
    {k: v for k, v in record(lang="es").items() if k != "split"},  # a field missing
    record(lang="ru", seed=-1),
    record(lang="ru", score=12.0),  # score disagrees with the metrics
    record(lang="bg", metrics={}),  # no metric
    record(lang="el", metrics={"accuracy": 70.0, "f1": 5.0}, score=5.0),  # the score of the wrong metric
    record(target="mnli", lang="en"),  # not an XTREME-R target
    record(target="panx", lang="ja", metrics={"accuracy": 40.0}, score=40.0),  # tagging needs f1
    record(lang="th", n_examples=-3),
    record(lang="tr", split="train"),
    record(lang="vi", arm=""),
]


def _write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _both(folder, monkeypatch):
    fast, _ = gather_records(folder, qa_convention="em_f1", world=ONE)
    with monkeypatch.context() as patch:
        patch.setattr(columns, "eligible", lambda data: False)  # every file record by record
        slow, _ = gather_records(folder, qa_convention="em_f1", world=ONE)
    return fast, slow


def _same(fast, slow):
    assert fast.values == slow.values
    assert fast.problems == slow.problems and fast.duplicates == slow.duplicates
    assert fast.n_records == slow.n_records and fast.files == slow.files


def test_good_and_bad_records_give_the_same_result_either_way(tmp_path, monkeypatch):
    lines = [json.dumps(r) for r in GOOD + BAD]
    random.Random(3).shuffle(lines)
    _write(tmp_path, "eval.job.jsonl", lines)
    _write(tmp_path, "eval.other.jsonl", [json.dumps(record(lang="zh", seed=3)), json.dumps(qa(1.0, 2.0, lang="zh"))])
    block = columns.parse_block([(tmp_path / "eval.job.jsonl").read_bytes()], "em_f1")
    assert sum(len(rows[0]) for rows in block.groups.values()) == len(GOOD) and len(block.slow_lines) == len(BAD)
    fast, slow = _both(tmp_path, monkeypatch)
    _same(fast, slow)
    assert fast.n_records == len(GOOD) + 2 and len(fast.problems) == len(BAD)
    assert fast.values[("test", "mnli", "xquad")][(1, "ar")].score == (60.123456789 + 70.987654321) / 2


@pytest.mark.parametrize(
    "odd",
    [
        "NaN",  # json.loads accepts it, pyarrow does not: the whole block goes record by record
        "null",  # an explicit null: that file record by record
        "blank",  # a blank line: that file record by record
        "truncated",
        "seed-float",
        "metric-bool",
        "duplicate",
        "conflict",
    ],
)
def test_whatever_the_columns_cannot_judge_is_judged_record_by_record(tmp_path, monkeypatch, odd):
    good = [json.dumps(r) for r in GOOD]
    lines = {
        "NaN": good
        + [
            '{"key": "eval.mnli.xnli.s1.pt", "arm": "mnli", "target": "xnli", "seed": 1, "lang": "pt", '
            '"split": "test", "metrics": {"accuracy": NaN}, "score": NaN}'
        ],
        "null": good + [json.dumps(record(lang="pt", metrics={"accuracy": 50.0, "f1": None}, score=50.0))],
        "blank": good[:3] + [""] + good[3:],
        "truncated": good + [good[0][:40]],
        "seed-float": good + [json.dumps(record(lang="pt", seed=1.0))],
        "metric-bool": good + [json.dumps(record(lang="pt", metrics={"accuracy": True}, score=1.0))],
        "duplicate": good + [good[0]],
        "conflict": good + [json.dumps(record(score=71.26, metrics={"accuracy": 71.26}))],
    }[odd]
    _write(tmp_path, "a.jsonl", lines)
    _write(tmp_path, "b.jsonl", [json.dumps(record(lang="zh", seed=3))])
    (tmp_path / "eval.mnli.xnli.s4.de.test.json").write_text(json.dumps(record(seed=4)))  # an earlier layout's file
    fast, slow = _both(tmp_path, monkeypatch)
    _same(fast, slow)
    assert fast.n_records >= len(GOOD) + 2


def test_scores_equal_the_record_by_record_scores_to_the_last_bit(tmp_path, monkeypatch):
    rng = random.Random(7)
    lines = []
    for seed in range(1, 40):
        for lang in ("ar", "de", "el", "es", "hi"):
            em, f1 = rng.uniform(0, 100), rng.uniform(0, 100)
            lines.append(json.dumps(qa(em, f1, seed=seed, lang=lang)))
            acc = rng.uniform(0, 100)
            lines.append(json.dumps(record(seed=seed, lang=lang, metrics={"accuracy": acc}, score=acc)))
    _write(tmp_path, "eval.rand.jsonl", lines)
    fast, slow = _both(tmp_path, monkeypatch)
    _same(fast, slow)
    assert fast.n_records == len(lines) and not fast.problems
