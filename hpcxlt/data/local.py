"""Local data: `<root>/<task>/<lang>/<split>.<ext>`, each file in its data set's original release format.

| ext       | format (where it comes from)                                                                   |
|-----------|------------------------------------------------------------------------------------------------|
| .jsonl    | one row per line in the registry schema (`hpcxlt synth`, XCOPA's `{val,test}.<lang>.jsonl`)     |
| .json     | SQuAD v1.1 JSON (SQuAD, XQuAD, MLQA, TyDiQA-GoldP; LAReQA's XQuAD-R with `sentence_breaks`), or a JSON list of rows |
| .parquet  | rows in the registry schema (a hub parquet file)                                                |
| .tsv      | a header row, then rows, quoted as pandas reads them (SIB-200 `index_id category text`, AfriSenti `ID tweet label`) |
| .conll    | `token<TAB>...<TAB>tag`, empty line between sentences (XTREME's PAN-X/UD-POS files)            |
| .txt      | `token tag` separated by spaces, blank line between sentences (MasakhaNER `{train,dev,test}.txt`) |

Each format is read by the rules of its publishers' own reader (`hpcxlt.data.readers`, docs/data.md);
a bad row stops the load with a `DataFileError` naming the file and every bad line.
| .conllu   | UD CoNLL-U, converted as XTREME does (multiword tokens keep their surface form; `conllu.py`)    |

Labels may be stored as ids or as names; names are mapped by the registry's label names, never by
position. `docs/data.md` lists, per task, which release file goes where.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.conllu import read_conllu
from hpcxlt.data.readers import DataFileError, read_json, read_jsonl, read_tagged, read_tsv
from hpcxlt.tasks.spec import TaskSpec

MANIFEST = "manifest.json"
"""What a data root written by `hpcxlt prepare` (or `hpcxlt synth`) holds besides the files: sources, row counts."""
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".tsv", ".conll", ".txt", ".conllu")
TAGGING_SUFFIXES = (".conll", ".txt", ".conllu")
CANDIDATES_STEM = "candidates"


class DataNotFoundError(FileNotFoundError):
    """Data for a task / language / split is missing; the message names it and lists what exists."""


def data_root(data_cfg: DataConfig) -> Path:
    """The local data folder; DataNotFoundError when data.root is not set."""
    if not data_cfg.root:
        raise DataNotFoundError(
            "data.root is not set: local data needs a folder laid out as <task>/<lang>/<split>.<ext>"
        )
    return Path(data_cfg.root).expanduser()


def listing(folder: Path) -> str:
    """What a folder holds, for error messages."""
    if not folder.is_dir():
        return "nothing (the folder does not exist)"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    return ", ".join(names) if names else "nothing (the folder is empty)"


def find_file(folder: Path, stem: str, suffixes: tuple[str, ...] = LOCAL_SUFFIXES) -> Path | None:
    """The first `folder/stem<suffix>` that exists, in the order of `suffixes`."""
    for suffix in suffixes:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def local_file(spec: TaskSpec, lang: str, split: str, data_cfg: DataConfig) -> Path:
    """The local file holding a split; DataNotFoundError names the paths tried and what exists."""
    root = data_root(data_cfg)
    folder = root / spec.name / lang
    path = find_file(folder, split)
    if path is not None:
        return path
    if not (root / spec.name).is_dir():
        where, what = root, listing(root)
    elif not folder.is_dir():
        where, what = root / spec.name, listing(root / spec.name)
    else:
        where, what = folder, listing(folder)
    hint = (
        ""
        if (root / MANIFEST).is_file()
        else f" (`hpcxlt prepare CONFIG --out {root}` fetches the plan's data there; `hpcxlt synth {root}` "
        "writes the synthetic demo benchmark)"
    )
    raise DataNotFoundError(
        f"no local data for task {spec.name!r}, language {lang!r}, split {split!r}: looked for "
        f"{folder}/{split}{{{','.join(LOCAL_SUFFIXES)}}}; {where} holds {what}{hint}"
    )


def _squad_json_rows(obj: dict) -> list[dict]:
    """Rows of the official SQuAD-style JSON, flattened to the 'squad' schema; a paragraph's official
    `sentence_breaks` (LAReQA's XQuAD-R release) travel with each of its questions."""
    rows = []
    for article in obj["data"]:
        for paragraph in article["paragraphs"]:
            breaks = paragraph.get("sentence_breaks")
            for qa in paragraph["qas"]:
                row = {
                    "id": qa["id"],
                    "title": article.get("title", ""),
                    "context": paragraph["context"],
                    "question": qa["question"],
                    "answers": {
                        "text": [a["text"] for a in qa.get("answers", [])],
                        "answer_start": [a["answer_start"] for a in qa.get("answers", [])],
                    },
                }
                if breaks is not None:
                    row["sentence_breaks"] = [list(pair) for pair in breaks]
                rows.append(row)
    return rows


def _tagging_spec(path: Path, spec: TaskSpec) -> None:
    if spec.format != "tagging":
        raise ValueError(f"{path}: {path.suffix} files hold tagging data, but task {spec.name!r} is {spec.format}")


def _tagged_rows(path: Path, spec: TaskSpec, lang: str, *, tsv: bool) -> list[dict]:
    """Token-per-line files (XTREME's `.conll`, MasakhaNER's `.txt`), read as their publishers read them
    (`hpcxlt.data.readers`)."""
    _tagging_spec(path, spec)
    tokens_col, tags_col = spec.columns["tokens"], spec.columns["tags"]
    return [{tokens_col: tokens, tags_col: tags} for tokens, tags in read_tagged(path, spec.label_names, lang, tsv=tsv)]


def _conllu_rows(path: Path, spec: TaskSpec, lang: str) -> list[dict]:
    _tagging_spec(path, spec)
    return [
        {spec.columns["tokens"]: words, spec.columns["tags"]: tags}
        for words, tags in read_conllu(path, lang, spec.label_names)
    ]


def _json_rows(path: Path) -> list[dict]:
    try:
        obj = read_json(path)
    except DataFileError as not_json:  # JSON lines under a .json name; else the JSON error stands
        try:
            return read_jsonl(path)
        except DataFileError:
            raise not_json from None
    if isinstance(obj, dict) and "data" in obj:
        return _squad_json_rows(obj)
    if isinstance(obj, list):
        return obj
    raise DataFileError(path, [(None, "expected a list of rows or the SQuAD {'data': [...]} layout")])


def _tsv_rows(path: Path, spec: TaskSpec) -> list[dict]:
    if spec.format == "classification":
        texts = tuple(spec.columns[role] for role in ("text", "text_pair") if role in spec.columns)
        return read_tsv(path, text_columns=texts, label_column=spec.columns["label"], label_names=spec.label_names)
    return read_tsv(path)


def read_local_rows(path: Path, spec: TaskSpec, lang: str) -> list[dict] | Any:
    """Rows of a local file (a pyarrow Table for parquet)."""
    suffix = path.suffix
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return _json_rows(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # heavy: pyarrow

        return pq.read_table(path)
    if suffix == ".tsv":
        return _tsv_rows(path, spec)
    if suffix == ".conll":
        return _tagged_rows(path, spec, lang, tsv=True)
    if suffix == ".txt":
        return _tagged_rows(path, spec, lang, tsv=False)
    if suffix == ".conllu":
        return _conllu_rows(path, spec, lang)
    raise ValueError(f"{path}: unsupported suffix {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}")


def rows_to_dataset(rows, path: Path):
    """A `datasets.Dataset` of local rows (a list of dicts or a pyarrow Table)."""
    import datasets  # heavy: datasets

    if not isinstance(rows, list):
        return datasets.Dataset(rows)  # pyarrow Table
    if not rows:
        raise ValueError(f"{path}: holds no rows")
    try:
        return datasets.Dataset.from_list(rows)
    except (TypeError, ValueError, ArithmeticError) as err:  # pyarrow's ArrowInvalid/ArrowTypeError among them
        raise ValueError(f"{path}: {_first_mixed_value(rows) or err}") from None


def _first_mixed_value(rows: list[dict]) -> str | None:
    """'row N: column C holds V (type), the rows before hold T' for the first value whose type differs
    from its column's first value (what makes one Arrow column impossible)."""
    first: dict[str, type] = {}
    for number, row in enumerate(rows, 1):
        for column, value in row.items():
            if value is None:
                continue
            kind = float if type(value) is int and first.get(column) is float else type(value)
            expected = first.setdefault(column, kind)
            if kind is not expected and not (kind is int and expected is float):
                return (
                    f"row {number}: column {column!r} holds {value!r} ({kind.__name__}) where the rows "
                    f"before hold {expected.__name__} values"
                )
    return None


def file_fingerprint(path: Path) -> str:
    """Content hash of a file (the data, not its timestamp: regenerating equal data keeps caches valid)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_candidates_file(spec: TaskSpec, data_cfg: DataConfig) -> Path:
    """The local file of a task's shared candidate pool (`<root>/<task>/candidates.<ext>`)."""
    folder = data_root(data_cfg) / spec.name
    path = find_file(folder, CANDIDATES_STEM, (".jsonl", ".json", ".parquet", ".tsv"))
    if path is None:
        raise DataNotFoundError(
            f"no candidate pool for task {spec.name!r}: looked for {folder}/{CANDIDATES_STEM}.jsonl; "
            f"{folder} holds {listing(folder)}"
        )
    return path


def local_languages(spec: TaskSpec, data_cfg: DataConfig, split: str) -> tuple[str, ...]:
    """Languages with a local file for `split`."""
    root = data_root(data_cfg) / spec.name
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and find_file(p, split) is not None))


__all__ = [
    "CANDIDATES_STEM",
    "DataNotFoundError",
    "LOCAL_SUFFIXES",
    "data_root",
    "file_fingerprint",
    "find_file",
    "listing",
    "local_candidates_file",
    "local_file",
    "local_languages",
    "read_local_rows",
    "rows_to_dataset",
]
