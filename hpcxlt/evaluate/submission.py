"""The official XTREME-R submission layout: read and write `<folder>/<task>/test-<lang>.<ext>`.

Predictions and labels use the same layout. File formats, learned from google-research/xtreme
(`evaluate.py` readers, `mock_test_data/`, `third_party/run_xcopa.py`, `third_party/utils_mewslix.py`):

| task | ext | one file holds |
|---|---|---|
| xnli, tatoeba | tsv | one label per line (a class name; for tatoeba the index of the English match) |
| xcopa | jsonl | one JSON object per line with an integer "label" (the chosen alternative) |
| udpos, panx | tsv | one tag per line, a blank line between sentences |
| xquad, mlqa, tydiqa | json | predictions: {question id: answer text}; labels: SQuAD v1.1 JSON |
| mewslix | json | predictions: {mention id: [entity ids, best first]}; labels: {mention id: [gold entity id]} |
| lareqa | tsv | one query per line: id, then tab-separated candidate ids (ranked, or the relevant ones) |

The official scorer has no file format for lareqa; ours mirrors mewslix in tsv (source:
../shared/notes/research.md, "tsv otherwise"). Reading is as lenient as the official readers
(stripped lines, SQuAD files with or without the "data" wrapper) and strict about structure: a file
that does not parse raises `SubmissionError` naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpcxlt.io import write_json_atomic, write_text_atomic

# task -> (file kind, extension). Kinds: 'lines', 'xcopa', 'tags', 'squad', 'ranking_json', 'ranking_tsv'.
LAYOUT: dict[str, tuple[str, str]] = {
    "xnli": ("lines", "tsv"),
    "xcopa": ("xcopa", "jsonl"),
    "udpos": ("tags", "tsv"),
    "panx": ("tags", "tsv"),
    "xquad": ("squad", "json"),
    "mlqa": ("squad", "json"),
    "tydiqa": ("squad", "json"),
    "tatoeba": ("lines", "tsv"),
    "mewslix": ("ranking_json", "json"),
    "lareqa": ("ranking_tsv", "tsv"),
}


class SubmissionError(ValueError):
    """A submission or label file is missing or malformed; the message names the file."""


def _kind(task: str) -> tuple[str, str]:
    if task not in LAYOUT:
        raise SubmissionError(f"task {task!r} has no submission layout; XTREME-R tasks are {', '.join(LAYOUT)}")
    return LAYOUT[task]


def file_name(task: str, lang: str) -> str:
    """'test-<lang>.<ext>' for `task`."""
    return f"test-{lang}.{_kind(task)[1]}"


def file_path(folder: str | os.PathLike, task: str, lang: str) -> Path:
    """Where `task`'s file for `lang` lives under a submission (or label) folder."""
    return Path(folder) / task / file_name(task, lang)


def task_folders(folder: str | os.PathLike) -> list[str]:
    """Names of the sub-folders of a submission folder (hidden ones skipped), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise SubmissionError(f"{root}: not a folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# --- reading -----------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise SubmissionError(f"{path}: file is missing")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SubmissionError(f"{path}: not UTF-8 ({err})") from None


def _lines(text: str) -> list[str]:
    # Like iterating over a file: a final newline does not start another line; a blank line inside does.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def _read_tags(path: Path) -> list[list[str]]:
    # Every blank line closes a sentence (even an empty one), a non-empty tail is the last sentence,
    # like evaluate.py's read_tag, so two files line up sentence by sentence.
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in _lines(_read_text(path)):
        if line:
            current.append(line)
        else:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _read_xcopa(path: Path) -> list[int]:
    labels = []
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        try:
            row = json.loads(line)
            label = row["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SubmissionError(f"{path}, line {number}: expected a JSON object with an integer 'label'") from None
        if isinstance(label, bool) or not isinstance(label, int):
            raise SubmissionError(f"{path}, line {number}: 'label' must be an integer, got {label!r}")
        labels.append(label)
    return labels


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise SubmissionError(f"{path}: not valid JSON ({err})") from None


def _read_squad_labels(path: Path) -> dict[str, list[str]]:
    data = _read_json(path)
    articles = data.get("data") if isinstance(data, dict) else data
    if not isinstance(articles, list):
        raise SubmissionError(f"{path}: expected SQuAD v1.1 JSON (a 'data' list of articles)")
    golds: dict[str, list[str]] = {}
    try:
        for article in articles:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    golds[str(qa["id"])] = [str(answer["text"]) for answer in qa["answers"]]
    except (KeyError, TypeError) as err:
        raise SubmissionError(f"{path}: not SQuAD v1.1 JSON (missing or wrong {err})") from None
    return golds


def _read_squad_predictions(path: Path) -> dict[str, str]:
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SubmissionError(f"{path}: expected a JSON object {{question id: answer text}}")
    return data


def _read_ranking_json(path: Path) -> dict[str, list[str]]:
    data = _read_json(path)
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in data.values()
    ):
        raise SubmissionError(f"{path}: expected a JSON object {{id: [entity ids]}}")
    return {key: [item.strip() for item in value] for key, value in data.items()}


def _read_ranking_tsv(path: Path) -> dict[str, list[str]]:
    rankings: dict[str, list[str]] = {}
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        fields = [field.strip() for field in line.split("\t")]
        if not fields[0]:
            raise SubmissionError(f"{path}, line {number}: expected '<query id>\\t<candidate id>...'")
        if fields[0] in rankings:
            raise SubmissionError(f"{path}, line {number}: query id {fields[0]!r} appears twice")
        rankings[fields[0]] = [field for field in fields[1:] if field]
    return rankings


def read_labels(path: str | os.PathLike, task: str) -> Any:
    """Parse a label file of `task`: list[str] (lines), list[int] (xcopa), list[list[str]] (tags),
    {qid: [answers]} (QA), {query id: [relevant ids]} (mewslix, lareqa)."""
    kind = _kind(task)[0]
    path = Path(path)
    if kind == "squad":
        return _read_squad_labels(path)
    return _read(path, kind)


def read_predictions(path: str | os.PathLike, task: str) -> Any:
    """Parse a prediction file of `task`: as `read_labels`, except QA gives {qid: answer text} and
    rankings are best first."""
    kind = _kind(task)[0]
    path = Path(path)
    if kind == "squad":
        return _read_squad_predictions(path)
    return _read(path, kind)


def _read(path: Path, kind: str) -> Any:
    if kind == "lines":
        return _lines(_read_text(path))
    if kind == "xcopa":
        return _read_xcopa(path)
    if kind == "tags":
        return _read_tags(path)
    if kind == "ranking_json":
        return _read_ranking_json(path)
    return _read_ranking_tsv(path)


# --- writing -----------------------------------------------------------------------------------


def _check_field(value: str, what: str, task: str, lang: str) -> str:
    value = str(value)
    if value != value.strip() or "\n" in value or "\t" in value or not value:
        raise SubmissionError(
            f"{task}/{lang}: {what} {value!r} must be non-empty without tabs, newlines or edge spaces"
        )
    return value


def _format(task: str, lang: str, items: Any, *, labels: bool) -> tuple[str, Any]:
    """(kind, content): text for line-based files, a JSON-able object for json files."""
    kind = _kind(task)[0]
    if kind == "lines":
        return kind, "".join(_check_field(item, "label", task, lang) + "\n" for item in items)
    if kind == "xcopa":
        return kind, "".join(json.dumps({"label": int(item)}) + "\n" for item in items)
    if kind == "tags":
        if any(len(sentence) == 0 for sentence in items):
            raise SubmissionError(
                f"{task}/{lang}: a sentence without tags cannot be written (blank lines separate sentences)"
            )
        blocks = ["".join(_check_field(tag, "tag", task, lang) + "\n" for tag in sentence) for sentence in items]
        return kind, "\n".join(blocks)
    if kind == "squad":
        if not labels:
            return kind, {str(qid): str(answer) for qid, answer in items.items()}
        # A minimal SQuAD v1.1 file: only ids and answer texts are needed for scoring.
        qas = [{"id": str(qid), "answers": [{"text": str(a)} for a in answers]} for qid, answers in items.items()]
        return kind, {"version": "1.1", "data": [{"title": "", "paragraphs": [{"context": "", "qas": qas}]}]}
    if kind == "ranking_json":
        return kind, {str(qid): [str(i) for i in ids] for qid, ids in items.items()}
    lines = [
        "\t".join(
            [_check_field(qid, "query id", task, lang)] + [_check_field(i, "candidate id", task, lang) for i in ids]
        )
        for qid, ids in items.items()
    ]
    return kind, "".join(line + "\n" for line in lines)


def _write(folder: str | os.PathLike, task: str, lang: str, items: Any, *, labels: bool) -> Path:
    path = file_path(folder, task, lang)
    kind, content = _format(task, lang, items, labels=labels)
    if kind in ("squad", "ranking_json"):
        return write_json_atomic(path, content, indent=None)
    return write_text_atomic(path, content)


def write_predictions(
    folder: str | os.PathLike, task: str, lang: str, predictions: Sequence[Any] | Mapping[str, Any]
) -> Path:
    """Atomically write one prediction file into the layout and return its path.

    `predictions` is what `read_predictions` returns: labels (lines), ints (xcopa), tag lists
    (tagging), {qid: answer} (QA), {id: [ranked ids]} (mewslix, lareqa).
    """
    return _write(folder, task, lang, predictions, labels=False)


def write_labels(folder: str | os.PathLike, task: str, lang: str, labels: Sequence[Any] | Mapping[str, Any]) -> Path:
    """Atomically write one label file into the layout; QA labels are {qid: [answer texts]}."""
    return _write(folder, task, lang, labels, labels=True)


# --- reading a prediction file against its label file ------------------------------------------


def _tag_line(sentences: Sequence[Sequence[str]], index: int) -> int:
    # Line number where sentence `index` starts: each earlier sentence used its tags plus one blank line
    # (the same in both files, since earlier sentences matched).
    return sum(len(sentence) + 1 for sentence in sentences[:index]) + 1


def read_pair(pred_folder: str | os.PathLike, label_folder: str | os.PathLike, task: str, lang: str) -> tuple[Any, Any]:
    """Read one language's label and prediction files and check that they line up: (labels, predictions).

    Line-based files (xnli, xcopa, tatoeba, tagging) must have as many lines, sentences and tags
    as the label file, else `SubmissionError` names the prediction file. Keyed files (QA, mewslix,
    lareqa) may miss ids, which then score 0 as in the official scorer (see `id_coverage`).
    """
    kind = _kind(task)[0]
    label_path = file_path(label_folder, task, lang)
    pred_path = file_path(pred_folder, task, lang)
    for path in (label_path, pred_path):
        if not path.is_file():
            raise SubmissionError(f"{path}: file is missing ({task} is scored on every one of its languages)")
    labels = read_labels(label_path, task)
    predictions = read_predictions(pred_path, task)
    if kind in ("lines", "xcopa"):
        if len(predictions) != len(labels):
            raise SubmissionError(f"{pred_path}: {len(predictions)} lines, but {label_path} has {len(labels)}")
    elif kind == "tags":
        if len(predictions) != len(labels):
            raise SubmissionError(f"{pred_path}: {len(predictions)} sentences, but {label_path} has {len(labels)}")
        for index, (gold, pred) in enumerate(zip(labels, predictions)):
            if len(gold) != len(pred):
                raise SubmissionError(
                    f"{pred_path}: sentence {index + 1} (line {_tag_line(predictions, index)}) has {len(pred)} tags, "
                    f"but {label_path} has {len(gold)}"
                )
    return labels, predictions


def id_coverage(labels: Any, predictions: Any) -> tuple[int, int]:
    """For keyed files (QA, mewslix, lareqa): (gold ids without a prediction, predicted ids not in the gold)."""
    if not isinstance(labels, Mapping):
        return 0, 0
    return len(set(labels) - set(predictions)), len(set(predictions) - set(labels))
