"""The official submission layout: file names, exact file formats, round trips and alignment errors."""

from __future__ import annotations

import json

import pytest

from hpcxlt.evaluate import submission as S


def test_file_names_follow_the_official_layout(tmp_path):
    assert S.file_name("xnli", "de") == "test-de.tsv"
    assert S.file_name("xcopa", "qu") == "test-qu.jsonl"
    assert S.file_name("panx", "sw") == "test-sw.tsv"
    assert S.file_name("mlqa", "zh") == "test-zh.json"
    assert S.file_name("mewslix", "uk") == "test-uk.json"
    assert S.file_name("lareqa", "th") == "test-th.tsv"
    assert S.file_path(tmp_path, "tatoeba", "kk") == tmp_path / "tatoeba" / "test-kk.tsv"
    with pytest.raises(S.SubmissionError, match="'pawsx' has no submission layout"):
        S.file_name("pawsx", "de")


def test_reads_tag_files_like_the_official_reader(tmp_path):
    # one tag per line, blank line between sentences; surrounding spaces stripped; a blank line after a
    # blank line is an empty sentence; the final newline does not add one.
    path = tmp_path / "test-de.tsv"
    path.write_text("B-PER\n I-PER \nO\n\nB-LOC\n\n\nO\n", encoding="utf-8")
    assert S.read_labels(path, "panx") == [["B-PER", "I-PER", "O"], ["B-LOC"], [], ["O"]]
    path.write_text("NOUN\nVERB", encoding="utf-8")  # no final newline
    assert S.read_predictions(path, "udpos") == [["NOUN", "VERB"]]


def test_reads_squad_labels_with_or_without_data_wrapper_and_prediction_dicts(tmp_path):
    article = {
        "title": "t",
        "paragraphs": [
            {
                "context": "电化电池",
                "qas": [
                    {
                        "id": "q1",
                        "question": "?",
                        "answers": [{"answer_start": 0, "text": "电化电池"}, {"answer_start": 0, "text": "电池"}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "a.json").write_text(json.dumps({"data": [article], "version": 1.0}), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([article]), encoding="utf-8")
    assert S.read_labels(tmp_path / "a.json", "mlqa") == {"q1": ["电化电池", "电池"]}
    assert S.read_labels(tmp_path / "b.json", "xquad") == {"q1": ["电化电池", "电池"]}
    (tmp_path / "p.json").write_text(json.dumps({"q1": "电化电池"}, ensure_ascii=False), encoding="utf-8")
    assert S.read_predictions(tmp_path / "p.json", "mlqa") == {"q1": "电化电池"}


def test_reads_mewslix_and_xcopa_files(tmp_path):
    (tmp_path / "g.json").write_text('{"8e18": ["Q46930"]}', encoding="utf-8")
    assert S.read_labels(tmp_path / "g.json", "mewslix") == {"8e18": ["Q46930"]}
    # xcopa: one {"label": int} per line, as the baseline writes; extra fields (the XCOPA rows) are fine.
    (tmp_path / "x.jsonl").write_text('{"label": 1}\n{"premise": "p", "choice1": "a", "choice2": "b", "label": 0}\n')
    assert S.read_labels(tmp_path / "x.jsonl", "xcopa") == [1, 0]


def test_malformed_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "test-et.jsonl"
    bad.write_text('{"label": 1}\n{"lable": 0}\n')
    with pytest.raises(
        S.SubmissionError, match=r"test-et.jsonl, line 2: expected a JSON object with an integer 'label'"
    ):
        S.read_predictions(bad, "xcopa")
    bad.write_text('{"label": "1"}\n')
    with pytest.raises(S.SubmissionError, match="must be an integer"):
        S.read_predictions(bad, "xcopa")
    squad = tmp_path / "test-en.json"
    squad.write_text('{"q1": ["not", "a string"]}')
    with pytest.raises(S.SubmissionError, match=r"test-en.json: expected a JSON object \{question id: answer text\}"):
        S.read_predictions(squad, "xquad")
    squad.write_text("{not json")
    with pytest.raises(S.SubmissionError, match="test-en.json: not valid JSON"):
        S.read_labels(squad, "tydiqa")
    lareqa = tmp_path / "test-ar.tsv"
    lareqa.write_text("q1\ta\tb\nq1\tc\n")
    with pytest.raises(S.SubmissionError, match="line 2: query id 'q1' appears twice"):
        S.read_predictions(lareqa, "lareqa")


@pytest.mark.parametrize(
    ("task", "labels", "predictions"),
    [
        ("xnli", ["entailment", "neutral"], ["neutral", "neutral"]),
        ("tatoeba", ["308", "441"], ["308", "12"]),
        ("xcopa", [0, 1, 1], [1, 1, 0]),
        ("panx", [["B-PER", "I-PER"], ["O"]], [["B-PER", "O"], ["B-LOC"]]),
        ("udpos", [["NOUN", "VERB", "PUNCT"]], [["NOUN", "NOUN", "PUNCT"]]),
        ("mlqa", {"q1": ["北京大学", "北京"]}, {"q1": "北京"}),
        ("mewslix", {"m1": ["Q1"]}, {"m1": ["Q9", "Q1"]}),
        ("lareqa", {"q1": ["c1", "c7"]}, {"q1": ["c7", "c2", "c1"]}),
    ],
)
def test_write_then_read_round_trips(tmp_path, task, labels, predictions):
    label_path = S.write_labels(tmp_path / "labels", task, "xx", labels)
    pred_path = S.write_predictions(tmp_path / "preds", task, "xx", predictions)
    assert label_path == S.file_path(tmp_path / "labels", task, "xx")
    assert S.read_labels(label_path, task) == labels
    assert S.read_predictions(pred_path, task) == predictions


def test_tag_files_are_written_in_the_exact_official_format(tmp_path):
    path = S.write_predictions(tmp_path, "panx", "de", [["B-PER", "I-PER", "O"], ["B-LOC"]])
    assert path.read_text(encoding="utf-8") == "B-PER\nI-PER\nO\n\nB-LOC\n"


def test_writer_refuses_fields_that_would_break_the_format(tmp_path):
    with pytest.raises(S.SubmissionError, match="tag 'B-PER\\\\tX'"):
        S.write_predictions(tmp_path, "panx", "de", [["B-PER\tX"]])
    with pytest.raises(S.SubmissionError, match="a sentence without tags"):
        S.write_predictions(tmp_path, "panx", "de", [["O"], []])
    with pytest.raises(S.SubmissionError, match="label ''"):
        S.write_predictions(tmp_path, "xnli", "de", ["entailment", ""])


def _pair(tmp_path, task, labels, predictions, lang="de"):
    S.write_labels(tmp_path / "labels", task, lang, labels)
    S.write_predictions(tmp_path / "preds", task, lang, predictions)
    return S.read_pair(tmp_path / "preds", tmp_path / "labels", task, lang)


def test_read_pair_names_the_prediction_file_on_a_line_count_mismatch(tmp_path):
    with pytest.raises(
        S.SubmissionError, match=r"preds/xnli/test-de.tsv: 1 lines, but .*labels/xnli/test-de.tsv has 2"
    ):
        _pair(tmp_path, "xnli", ["a", "b"], ["a"])


def test_read_pair_names_sentence_and_line_on_a_tag_count_mismatch(tmp_path):
    with pytest.raises(
        S.SubmissionError, match=r"test-de.tsv: sentence 2 \(line 4\) has 1 tags, but .*labels/panx/test-de.tsv has 2$"
    ):
        _pair(tmp_path, "panx", [["O", "O"], ["B-PER", "I-PER"]], [["O", "O"], ["B-PER"]])
    with pytest.raises(S.SubmissionError, match="1 sentences, but .* has 2"):
        _pair(tmp_path, "udpos", [["NOUN"], ["VERB"]], [["NOUN"]])


def test_read_pair_names_a_missing_file(tmp_path):
    S.write_labels(tmp_path / "labels", "xnli", "de", ["a"])
    with pytest.raises(S.SubmissionError, match=r"preds/xnli/test-de.tsv: file is missing"):
        S.read_pair(tmp_path / "preds", tmp_path / "labels", "xnli", "de")


def test_keyed_files_may_miss_ids_and_id_coverage_counts_them(tmp_path):
    labels, predictions = _pair(tmp_path, "xquad", {"q1": ["a"], "q2": ["b"]}, {"q1": "a", "q3": "c"})
    assert labels == {"q1": ["a"], "q2": ["b"]} and predictions == {"q1": "a", "q3": "c"}
    assert S.id_coverage(labels, predictions) == (1, 1)
    assert S.id_coverage(["a"], ["b"]) == (0, 0)


def test_task_folders_lists_subfolders_and_skips_hidden_ones(tmp_path):
    for name in ("xnli", "panx", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.txt").write_text("x")
    assert S.task_folders(tmp_path) == ["panx", "xnli"]
    with pytest.raises(S.SubmissionError, match="not a folder"):
        S.task_folders(tmp_path / "nope")
