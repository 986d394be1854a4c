"""`hpcxlt score` on a small synthetic submission that covers all ten XTREME-R tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.cli import main
from hpcxlt.evaluate.submission import file_path, write_labels, write_predictions
from hpcxlt.tasks.registry import get_task

REPO = Path(__file__).resolve().parents[1]

# task -> (labels, predictions) written for every language of the task, and the expected task score.
CASES = {
    "xnli": (
        ["entailment", "neutral", "contradiction", "neutral"],
        ["entailment", "neutral", "neutral", "neutral"],
    ),  # 75
    "xcopa": ([0, 1], [0, 0]),  # 50
    # UPOS chunks: gold NOUN(0-1) VERB(2), pred NOUN(0) ADJ(1) VERB(2): P=1/3, R=1/2 -> F1 40
    "udpos": ([["NOUN", "NOUN", "VERB"]], [["NOUN", "ADJ", "VERB"]]),
    "panx": ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]]),  # 50
    "xquad": ({"q1": ["1990"], "q2": ["42"]}, {"q1": "1990"}),  # EM 50, F1 50 -> 50
    # q1 exact; q2 "1 2" vs "1 2 3 4": EM 0, F1 2/3 -> EM 50, F1 83.33 -> 66.67
    "mlqa": ({"q1": ["1990"], "q2": ["1 2 3 4"]}, {"q1": "1990", "q2": "1 2"}),
    "tydiqa": ({"q1": ["7"]}, {"q1": "7"}),  # 100
    "tatoeba": (["3", "1", "0", "2"], ["3", "0", "1", "1"]),  # 25
    "mewslix": ({"m1": ["Q1"]}, {"m1": ["Q2", "Q1"]}),  # 50
    "lareqa": ({"q1": ["a", "b"]}, {"q1": ["a", "x", "b"]}),  # (1 + 2/3)/2 = 83.33
}
EXPECTED = {
    "xnli": 75.0,
    "xcopa": 50.0,
    "udpos": 40.0,
    "panx": 50.0,
    "xquad": 50.0,
    "mlqa": 200 / 3,
    "tydiqa": 100.0,
    "tatoeba": 25.0,
    "mewslix": 50.0,
    "lareqa": 250 / 3,
}
EXPECTED_F1 = {**EXPECTED, "xquad": 50.0, "mlqa": 250 / 3, "tydiqa": 100.0}


def build(root: Path, tasks=tuple(CASES)) -> tuple[Path, Path]:
    preds, labels = root / "preds", root / "labels"
    for task in tasks:
        gold, pred = CASES[task]
        for lang in get_task(task).languages:
            write_labels(labels, task, lang, gold)
            write_predictions(preds, task, lang, pred)
    return preds, labels


def run_json(capsys, *argv: str) -> dict:
    assert main(["score", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_reports_every_task_category_and_the_overall_score(tmp_path, capsys):
    preds, labels = build(tmp_path)
    data = run_json(capsys, str(preds), "--labels", str(labels))
    assert {task: value["score"] for task, value in data["tasks"].items()} == pytest.approx(EXPECTED)
    assert set(data["tasks"]["mlqa"]["languages"]) == set(get_task("mlqa").languages)
    assert data["tasks"]["mlqa"]["languages"]["zh"] == pytest.approx({"exact_match": 50.0, "f1": 250 / 3})
    assert data["categories"] == pytest.approx(
        {
            "classification": 62.5,
            "structured_prediction": 45.0,
            "qa": (50.0 + 200 / 3 + 100.0) / 3,
            "retrieval": (25.0 + 50.0 + 250 / 3) / 3,
        }
    )
    assert data["xtreme_r"] == pytest.approx(59.0)
    assert data["partial"] is False


def test_qa_convention_f1_scores_qa_by_f1_only(tmp_path, capsys):
    preds, labels = build(tmp_path)
    data = run_json(capsys, str(preds), "--labels", str(labels), "--qa-convention", "f1")
    assert {task: value["score"] for task, value in data["tasks"].items()} == pytest.approx(EXPECTED_F1)
    assert data["xtreme_r"] == pytest.approx(sum(EXPECTED_F1.values()) / 10)


def test_table_output_prints_every_task_and_the_overall_score(tmp_path, capsys):
    preds, labels = build(tmp_path)
    assert main(["score", str(preds), "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    for task, score in EXPECTED.items():
        assert f"== {task} " in out and f"{score:.2f}" in out
    assert "structured_prediction" in out
    assert "XTREME-R: 59.00" in out


def test_runs_as_python_module(tmp_path):
    preds, labels = build(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "score", str(preds), "--labels", str(labels)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "XTREME-R: 59.00" in proc.stdout
    assert "== lareqa (retrieval): 83.33" in proc.stdout


def test_missing_tasks_give_no_overall_score_unless_partial(tmp_path, capsys):
    preds, labels = build(tmp_path, tasks=[t for t in CASES if t != "lareqa"])
    data = run_json(capsys, str(preds), "--labels", str(labels))
    assert data["xtreme_r"] is None and data["categories"]["retrieval"] is None
    data = run_json(capsys, str(preds), "--labels", str(labels), "--partial")
    nine = [v for t, v in EXPECTED.items() if t != "lareqa"]
    assert data["xtreme_r"] == pytest.approx(sum(nine) / 9) and data["partial"] is True


def test_task_in_only_one_folder_is_a_user_error_naming_it(tmp_path, capsys):
    preds, labels = build(tmp_path)
    for path in (labels / "lareqa").iterdir():
        path.unlink()
    (labels / "lareqa").rmdir()
    assert main(["score", str(preds), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "hpcxlt score: error:" in err and str(preds / "lareqa") in err and "has predictions but no folder" in err


def test_missing_language_file_is_a_user_error_naming_the_file(tmp_path, capsys):
    preds, labels = build(tmp_path)
    missing = file_path(preds, "panx", "yo")
    missing.unlink()
    assert main(["score", str(preds), "--labels", str(labels)]) == 2
    assert f"{missing}: file is missing" in capsys.readouterr().err


def test_partial_scores_a_language_subset_present_in_both_folders(tmp_path, capsys):
    preds, labels = build(tmp_path)
    kept = {"en", "de"}
    for folder in (preds, labels):
        for lang in get_task("xnli").languages:
            if lang not in kept:
                file_path(folder, "xnli", lang).unlink()
    # a language subset is an error without --partial ...
    assert main(["score", str(preds), "--labels", str(labels), "--json"]) == 2
    capsys.readouterr()
    # ... and with it the subset is scored, the rest noted, and the result marked partial
    data = run_json(capsys, str(preds), "--labels", str(labels), "--partial")
    assert set(data["tasks"]["xnli"]["languages"]) == kept
    assert data["tasks"]["xnli"]["score"] == pytest.approx(75.0)
    assert data["partial"] is True
    # a file on one side only is still a mismatch, --partial or not
    file_path(preds, "xnli", "de").unlink()
    assert main(["score", str(preds), "--labels", str(labels), "--partial"]) == 2
    assert "test-de.tsv" in capsys.readouterr().err


def test_line_count_mismatch_is_a_user_error_naming_the_file(tmp_path, capsys):
    preds, labels = build(tmp_path)
    short = file_path(preds, "xnli", "sw")
    short.write_text("entailment\nneutral\n", encoding="utf-8")
    assert main(["score", str(preds), "--labels", str(labels)]) == 2
    assert f"{short}: 2 lines, but {file_path(labels, 'xnli', 'sw')} has 4" in capsys.readouterr().err


def test_unanswered_questions_are_noted_on_stderr(tmp_path, capsys):
    preds, labels = build(tmp_path, tasks=["xquad"])
    assert main(["score", str(preds), "--labels", str(labels), "--partial"]) == 0
    captured = capsys.readouterr()
    n = len(get_task("xquad").languages)
    assert f"note: {preds / 'xquad'}: {n} of {2 * n} gold ids have no prediction and score 0" in captured.err
    assert "XTREME-R (partial): 50.00" in captured.out


def test_a_misnamed_file_is_named_not_passed_over(tmp_path, capsys):
    preds, labels = build(tmp_path, tasks=("xnli",))
    (preds / "xnli" / "test-zz.tsv").write_text("entailment\n")
    assert main(["score", str(preds), "--labels", str(labels), "--partial"]) == 0
    assert "test-zz.tsv not a file of the layout" in capsys.readouterr().err


def test_predictions_in_none_of_the_gold_labels_are_warned_about(tmp_path, capsys):
    preds, labels = build(tmp_path, tasks=("xnli",))
    for lang in get_task("xnli").languages:
        write_predictions(preds, "xnli", lang, ["ENTAILMENT", "NEUTRAL", "NEUTRAL", "NEUTRAL"])
    assert main(["score", str(preds), "--labels", str(labels), "--partial", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["tasks"]["xnli"]["score"] == 0.0
    assert "none of its 2 distinct predicted labels" in out.err and "were other names used" in out.err


def test_partial_names_a_file_missing_on_one_side_as_such(tmp_path, capsys):
    preds, labels = build(tmp_path, tasks=("xnli",))
    file_path(preds, "xnli", "de").unlink()
    assert main(["score", str(preds), "--labels", str(labels), "--partial"]) == 2
    err = capsys.readouterr().err
    assert "file is missing while the other folder has xnli's de file" in err
    assert "scored on every one of its languages" not in err
