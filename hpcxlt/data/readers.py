"""Release-file readers: each data set's file read the way its publishers' own code reads it.

Every reader starts from the same text hygiene (`text_lines`): UTF-8 with or without a byte-order mark,
LF or CRLF line ends, with or without a final newline; anything else (bytes that are not UTF-8, a
carriage return or another control character inside a line) is refused by file and line. Every reader
reports with one error type, `DataFileError`: the file, then each problem as `line N: what was found;
what is allowed`, all problems of a file at once (the first `MAX_SHOWN`, then a count of the rest).

Whose rules, per format (docs/data.md has the table):
- `token TAG` text (MasakhaNER 2.0 `{train,dev,test}.txt`): masakhane-io/masakhane-ner
  `code/utils_ner.py::read_examples_from_file`. A line is stripped of surrounding white space; one shorter
  than two characters ends the sentence (so ` O`, a tag with an empty token, is a sentence break, as
  there); otherwise it is split on single spaces, the first field the token and the last the tag. There
  are no comments: `# O` is the hashtag token `#`.
- `token<TAB>...<TAB>tag` (XTREME's preprocessed PAN-X / UD-POS files): google-research/xtreme
  `third_party/utils_tag.py::read_examples_from_file`. Only an empty line (or `-DOCSTART-`) ends a
  sentence; a line is split on tabs, first field the token, last field the tag; no comments (`#` tagged
  SYM is a token). The `lang:` token prefix of PAN-X is dropped, as XTREME's `utils_preprocess.py` does.
- TSV with a header (SIB-200, AfriSenti): `pandas.read_csv(path, sep='\\t')` in dadelani/sib-200
  `code/util_textclass.py` and afrisenti-semeval `starter_kit/run_textclass.py`: double-quote quoting,
  a doubled quote inside a quoted field is one quote, blank lines skipped. (pandas would also read a
  text such as `NA` or `null` as missing and the AfriSenti starter drops such rows; here a text is text.)

Where the publishers' readers are lenient, these refuse: a tag line without a tag (their test mode
reads it as `O`), an empty token or text, a label outside the task's label set, a row with the wrong
number of columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MAX_SHOWN = 20
"""Problems listed per file; the rest are counted."""

BOM = "\ufeff"


class DataFileError(ValueError):
    """A release file that cannot be read as its format says: names the file and each bad line."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]):
        self.path = Path(path)
        self.problems = problems
        shown = [f"  line {line}: {what}" if line else f"  {what}" for line, what in problems[:MAX_SHOWN]]
        if len(problems) > MAX_SHOWN:
            shown.append(f"  ... and {len(problems) - MAX_SHOWN} more problem(s)")
        count = f"{len(problems)} problem(s)" if len(problems) > 1 else "1 problem"
        super().__init__(f"{self.path}: {count}:\n" + "\n".join(shown))


class Problems:
    """Collects a file's problems; `raise_any` raises them together."""

    def __init__(self, path: str | Path):
        self.path = path
        self.found: list[tuple[int | None, str]] = []

    def add(self, line: int | None, what: str) -> None:
        self.found.append((line, what))

    def raise_any(self) -> None:
        if self.found:
            raise DataFileError(self.path, self.found)


def _decode(path: Path, data: bytes, problems: Problems) -> str:
    """The file's text; undecodable bytes are reported by line and replaced so the rest can be checked."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            problems.add(
                number,
                f"bytes {raw[err.start : err.start + 4]!r} at column {err.start + 1} are not UTF-8; "
                "allowed: UTF-8 text",
            )
    return data.decode("utf-8", errors="replace")


def read_text(path: str | Path, problems: Problems) -> str:
    """The whole text of a file, BOM removed, CRLF made LF; bad bytes and stray control characters are
    added to `problems` (by line)."""
    path = Path(path)
    text = _decode(path, path.read_bytes(), problems)
    if text.startswith(BOM):
        text = text[1:]
    text = text.replace("\r\n", "\n")
    if text.endswith("\r"):  # a CRLF file without its final LF
        text = text[:-1]
    for number, line in enumerate(text.split("\n"), 1):
        bad = next((c for c in line if (ord(c) < 32 and c != "\t") or ord(c) == 127 or c == BOM), None)
        if bad is not None:
            problems.add(
                number,
                f"control character {bad!r} at column {line.index(bad) + 1}; allowed: text, tabs, LF or CRLF line ends",
            )
    return text


def text_lines(path: str | Path, problems: Problems) -> list[str]:
    """The lines of a file after `read_text` (no line-end characters; no empty last line for a final newline)."""
    lines = read_text(path, problems).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# -- token-per-line files ------------------------------------------------------------------------------
def _sentences(
    path: Path,
    lines: Iterable[tuple[int, str]],
    tag_names: tuple[str, ...],
    lang: str,
    *,
    tsv: bool,
    problems: Problems,
) -> list[tuple[list[str], list[str]]]:
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    allowed = set(tag_names)
    for number, line in lines:
        if tsv:
            boundary = line == "" or line.startswith("-DOCSTART-")
            fields = line.split("\t")
        else:
            line = line.strip()
            boundary = len(line) < 2
            fields = line.split(" ")
        if boundary:
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        layout = "token<TAB>...<TAB>tag" if tsv else "token TAG (one space between)"
        if len(fields) < 2:
            problems.add(number, f"{line!r} has no tag; expected {layout}")
            continue
        token, tag = fields[0], fields[-1]
        if tsv and token.startswith(f"{lang}:"):
            token = token[len(lang) + 1 :]  # XTREME's PAN-X files prefix tokens with the language ('en:Paris')
        if not token.strip():
            problems.add(number, f"empty token in {line!r}; expected {layout}")
        elif allowed and tag not in allowed:
            problems.add(number, f"tag {tag!r} is not one of {sorted(allowed)}")
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def read_tagged(
    path: str | Path, tag_names: tuple[str, ...], lang: str, *, tsv: bool
) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) per sentence of a token-per-line file: `tsv` for XTREME's tab-separated files,
    else MasakhaNER's space-separated text (the rules of each publisher's reader: module docstring)."""
    problems = Problems(path)
    lines = text_lines(path, problems)
    sentences = _sentences(Path(path), enumerate(lines, 1), tag_names, lang, tsv=tsv, problems=problems)
    problems.raise_any()
    if not sentences:
        raise DataFileError(path, [(None, "holds no sentence")])
    return sentences


# -- TSV with a header -----------------------------------------------------------------------------
def _records(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each record; a quoted field may span lines."""
    reader = csv.reader(lines, delimiter="\t", quotechar='"', doublequote=True, strict=False)
    start = 1
    for fields in reader:
        yield start, fields
        start = reader.line_num + 1


def read_tsv(
    path: str | Path,
    *,
    text_columns: tuple[str, ...] = (),
    label_column: str | None = None,
    label_names: tuple[str, ...] = (),
) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header, quoted as `pandas.read_csv(sep='\\t')` reads it.
    Each row must have the header's number of fields; `text_columns` must not be empty; `label_column`
    must hold one of `label_names` (or an id into them)."""
    problems = Problems(path)
    lines = text_lines(path, problems)
    problems.raise_any()  # the csv parser cannot go on past a stray carriage return
    records = _records(lines)
    header = next(records, None)
    if header is None or not any(header[1]):
        raise DataFileError(path, [(1, "no header row; expected the column names, tab-separated")])
    names = header[1]
    rows = []
    for number, fields in records:
        if not fields:  # a blank line (pandas skips them too)
            continue
        if len(fields) != len(names):
            problems.add(
                number, f"{len(fields)} field(s) where the header {names} has {len(names)} (a tab too many or too few?)"
            )
            continue
        row = dict(zip(names, fields))
        for column in text_columns:
            if column in row and not row[column].strip():
                problems.add(number, f"column {column!r} is empty; expected text")
        if label_column and label_column in row and label_names:
            value = row[label_column].strip()
            if value not in label_names and not (value.isdigit() and int(value) < len(label_names)):
                problems.add(number, f"{label_column} {row[label_column]!r} is not one of {list(label_names)}")
        rows.append(row)
    problems.raise_any()
    return rows


# -- JSON ----------------------------------------------------------------------------------------------
def read_json(path: str | Path) -> Any:
    """A JSON document; a syntax error names the file, line and column."""
    problems = Problems(path)
    text = read_text(path, problems)
    problems.raise_any()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(
            path, [(err.lineno, f"not valid JSON at column {err.colno}: {err.msg} (truncated?)")]
        ) from None


def read_jsonl(path: str | Path) -> list[Any]:
    """One JSON value per non-blank line; every bad line is named."""
    problems = Problems(path)
    rows = []
    for number, line in enumerate(text_lines(path, problems), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            problems.add(number, f"not a JSON value at column {err.colno}: {err.msg}")
    problems.raise_any()
    return rows


__all__ = [
    "DataFileError",
    "MAX_SHOWN",
    "Problems",
    "read_json",
    "read_jsonl",
    "read_tagged",
    "read_text",
    "read_tsv",
    "text_lines",
]
