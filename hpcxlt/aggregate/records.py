"""Result records: read one file, check every field, turn each record into the number the tables use.

Two layouts are read: JSON lines, `results/<name>.jsonl` with one record per line (what evaluation jobs
write, one file per job), and the one record per file, `results/<key>.<split>.json`, of earlier
versions. This is the record-by-record path, which gives every precise error; the column-wise reader
(`hpcxlt.aggregate.columns`) takes the bulk of well-formed JSON-lines records and leaves the rest here. A bad file or line never stops aggregation: it comes back as a
`Problem` naming the path (and line) so the caller can report it and mark the tables partial.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from hpcxlt.config.schema import EVAL_SPLITS
from hpcxlt.evaluate.scoring import language_score
from hpcxlt.grid.plan import eval_key, key_stage
from hpcxlt.tasks.registry import UnknownTaskError, get_task

SCORE_TOLERANCE = 0.05
"""Points by which a record's `score` may differ from the score recomputed from its metrics (rounding)."""


class RecordError(ValueError):
    """One record is unusable; the message names the field and what was expected."""


class Record(NamedTuple):
    """One language's evaluation of one cell, as the tables use it.

    A NamedTuple rather than a frozen dataclass: a large sweep builds and pickles a million of these,
    and a tuple is built several times faster.
    """

    key: str
    """Eval cell key, 'eval.<arm>.<task>.s<seed>.<lang>'."""
    split: str
    """'dev' or 'test'."""
    arm: str
    """Intermediate arm."""
    target: str
    """Target task."""
    seed: int
    """Random seed."""
    lang: str
    """Evaluation language."""
    score: float
    """Per-language task score in points, recomputed from `metrics` under the run's QA convention."""
    metrics: dict[str, float]
    """Metric name -> points, as written by the evaluation."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A record that could not be used, and why."""

    path: str
    """File the record came from."""
    line: int | None
    """1-based line in a .jsonl shard; None for a one-record .json file."""
    message: str
    """What is wrong, naming the field."""
    key: str | None = None
    """The eval cell it would have filled, when the file name or line tells it."""
    split: str | None = None
    """Its split, when known."""

    @property
    def where(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "message": self.message, "key": self.key, "split": self.split}


def _finite(value: Any, field: str) -> float:
    # bool is an int subclass; a metric of `true` is a writer bug, not a score
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"{field}: expected a finite number of points, got {value!r}")
    return float(value)


def _text(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise RecordError(f"{field}: expected a non-empty string, got {value!r}")
    return value


_NUMBER = (int, float)
_QA_METRICS = ("squad", "mlqa")


def parse_record(obj: Any, *, qa_convention: str = "em_f1") -> Record:
    """Check one decoded record against the contract (docs/architecture.md) and compute its score.

    The score is recomputed from the metrics with `hpcxlt.evaluate.scoring.language_score` under the
    run's `qa_convention`; the stored `score` must agree with the metrics under one of the QA
    conventions (a score on another scale, e.g. 0-1, is rejected).
    """
    # Fast path for well-formed records (this runs a million times); anything odd goes to _explain,
    # which repeats the checks one by one and raises the precise error.
    try:
        key, arm, target, lang = obj["key"], obj["arm"], obj["target"], obj["lang"]
        split, seed, raw, stored = obj["split"], obj["seed"], obj["metrics"], obj["score"]
    except (KeyError, TypeError):
        _explain(obj)
    if not (
        type(key) is str
        and type(arm) is str
        and type(target) is str
        and type(lang) is str
        and arm
        and lang
        and split in EVAL_SPLITS
        and type(seed) is int
        and seed >= 0
        and type(raw) is dict
        and raw
        and type(stored) in _NUMBER
        and math.isfinite(stored)
        and key == eval_key(arm, target, seed, lang)
        and all(type(v) in _NUMBER and math.isfinite(v) for v in raw.values())
    ):
        _explain(obj)
    n_examples = obj.get("n_examples")
    if n_examples is not None and (type(n_examples) is not int or n_examples < 0):
        raise RecordError(f"n_examples: expected an integer >= 0, got {n_examples!r}")
    # the same few names repeat a million times: intern them so they are shared (and pickled once)
    intern = sys.intern
    metrics = {intern(name): float(value) for name, value in raw.items()}
    try:
        score = language_score(target, metrics, qa_convention=qa_convention)
        agrees = abs(stored - score) <= SCORE_TOLERANCE
        if not agrees and get_task(target).metric in _QA_METRICS:  # the writer may have used the other QA convention
            other = language_score(target, metrics, qa_convention="f1" if qa_convention == "em_f1" else "em_f1")
            agrees = abs(stored - other) <= SCORE_TOLERANCE
    except (ValueError, UnknownTaskError) as err:  # unknown target or a metric missing for it
        raise RecordError(str(err)) from None
    if not agrees:
        raise RecordError(f"score: {stored} does not match its metrics {metrics} (expected {score:.4f})")
    return Record(intern(key), split, intern(arm), intern(target), seed, intern(lang), score, metrics)


def _explain(obj: Any) -> NoReturn:
    """Raise the RecordError that says what is wrong with a record that failed the fast checks."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    key, arm, target, lang = (_text(obj, f) for f in ("key", "arm", "target", "lang"))
    split = obj.get("split")
    if split not in EVAL_SPLITS:
        raise RecordError(f"split: {split!r} is not one of {', '.join(EVAL_SPLITS)}")
    seed = obj.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecordError(f"seed: expected an integer >= 0, got {seed!r}")
    expected = eval_key(arm, target, seed, lang)
    if key != expected:
        raise RecordError(f"key: {key!r} does not match arm/target/seed/lang (expected {expected!r})")
    raw = obj.get("metrics")
    if not isinstance(raw, dict) or not raw:
        raise RecordError(f"metrics: expected a non-empty object of metric -> points, got {raw!r}")
    for name, value in raw.items():
        _finite(value, f"metrics.{name}")
    _finite(obj.get("score"), "score")
    raise RecordError("record does not follow the result-record contract")  # unreachable for the checks above


def name_of(path: str | Path) -> tuple[str | None, str | None]:
    """(key, split) that a one-record file's name '<key>.<split>.json' promises, or (None, None)."""
    name = Path(path).name
    if not name.endswith(".json"):
        return None, None
    stem = name[: -len(".json")]
    key, _, split = stem.rpartition(".")
    if key_stage(key) != "eval" or split not in EVAL_SPLITS:
        return None, None
    return key, split


def read_records(path: str | Path, *, qa_convention: str = "em_f1") -> Iterator[tuple[int | None, Record | Problem]]:
    """Yield (line, Record or Problem) for every record in one .json or .jsonl file."""
    path_s = str(path)
    if path_s.endswith(".jsonl"):
        yield from _read_lines(path_s, qa_convention)
        return
    key, split = name_of(path_s)
    try:
        with open(path_s, "rb") as handle:
            obj = json.loads(handle.read())
        record = parse_record(obj, qa_convention=qa_convention)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecordError) as err:
        yield None, Problem(path=path_s, line=None, message=_why(err), key=key, split=split)
        return
    if key is not None and (record.key, record.split) != (key, split):
        msg = f"file name promises {key}.{split} but the record is {record.key}.{record.split}"
        yield None, Problem(path=path_s, line=None, message=msg, key=key, split=split)
        return
    if key is None:
        yield None, Problem(path=path_s, line=None, message="file name is not '<eval key>.<dev|test>.json'")
        return
    yield None, record


def _read_lines(path: str, qa_convention: str) -> Iterator[tuple[int | None, Record | Problem]]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        yield None, Problem(path=path, line=None, message=_why(err))
        return
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield number, parse_line(path, number, line, qa_convention)


def parse_line(path: str, number: int, line: bytes, qa_convention: str) -> Record | Problem:
    """One line of a .jsonl file: its Record, or the Problem naming path, line and field."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return Problem(path=path, line=number, message=_why(err))
    try:
        return parse_record(obj, qa_convention=qa_convention)
    except RecordError as err:
        key = obj.get("key") if isinstance(obj, dict) and isinstance(obj.get("key"), str) else None
        split = obj.get("split") if key is not None and obj.get("split") in EVAL_SPLITS else None
        return Problem(path=path, line=number, message=_why(err), key=key, split=split)


def _why(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"not valid JSON (truncated or corrupt): {err.msg} at line {err.lineno} column {err.colno}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text: {err.reason}"
    if isinstance(err, OSError):
        return f"cannot read: {err.strerror or err}"
    return str(err)
