"""What one rank makes of its share of the record files (`read_block`): column-wise where it can, record by
record where it must.

A million records checked one by one in Python cost over ten CPU-seconds on a small machine (decoding
each line into a dict, then `records.parse_record`). Here a rank's files are joined into one buffer and
parsed by pyarrow's JSON reader into columns, and every check of `parse_record` runs on whole columns
with numpy. The rules are the same and so is the score (`scoring.score_terms`); whatever the columns
cannot judge exactly goes to the per-record path, which gives the precise error:

- a whole block when pyarrow refuses it (a truncated line, a field of another type, NaN, a key twice);
- a file with a blank line (the row -> line mapping would break) or a `null` anywhere (pyarrow cannot
  tell an explicit null from a missing field);
- a row that fails any check (then `parse_record` says which field is wrong).

So the result is exactly the per-record path's, only faster; tests/test_aggregate_columns.py compares
the two on good and bad records.
"""

from __future__ import annotations

import io
import os
from typing import Any, NamedTuple

import numpy as np

from hpcxlt.aggregate.records import SCORE_TOLERANCE, Problem, Record, parse_line, read_records
from hpcxlt.config.schema import EVAL_SPLITS
from hpcxlt.evaluate.scoring import QA_METRICS, XTREME_R_TASKS, score_terms
from hpcxlt.tasks.registry import get_task

STRING_FIELDS = ("key", "arm", "target", "lang", "split")

GroupKey = tuple[str, str, str]
"""(split, arm, target)."""


GroupRows = tuple  # (seed int64[], lang code int32[], score float64[], file int32[], line int32[])
"""One (split, arm, target) group's valid records as columns; lang codes index the block's `langs`."""


class Block(NamedTuple):
    """What the fast path made of a block: the rows it accepted, and what it left to the per-record path."""

    groups: dict[tuple[str, str, str], GroupRows]
    """(split, arm, target) -> its rows, in file order then line order; file = position in the block."""
    langs: list[str]
    """The languages that the groups' lang codes stand for."""
    slow_files: list[int]
    """Positions (in the block) of files to read record by record."""
    slow_lines: list[tuple[int, int, bytes]]
    """(position, line, text) of single lines to check record by record."""


class Columns(NamedTuple):
    """The records of one (split, arm, target), one cell each, as arrays (duplicates already resolved)."""

    seed: Any
    """int64 seeds."""
    lang: Any
    """int32 codes into Gathered.langs."""
    score: Any
    """float64 scores (points, recomputed under the run's QA convention)."""
    file: Any
    """int32 indexes into Gathered.files."""
    line: Any
    """int32 lines in a .jsonl file; 0 for a one-record file."""


def eligible(data: bytes) -> bool:
    """Whether a JSON-lines file's bytes can go through the column-wise reader."""
    return bool(data) and not data.startswith(b"\n") and b"\n\n" not in data and b"null" not in data


def parse_block(datas: list[bytes], qa_convention: str) -> Block:
    """Parse the eligible files' bytes (`eligible`) in one go; positions index `datas`."""
    import pyarrow as pa  # heavy: pyarrow
    import pyarrow.compute as pc  # heavy: pyarrow
    import pyarrow.json as pj  # heavy: pyarrow

    chosen = [i for i, data in enumerate(datas) if eligible(data)]
    picked = set(chosen)
    slow_files = [i for i in range(len(datas)) if i not in picked]
    if not chosen:
        return Block({}, [], slow_files, [])
    parts = [datas[i] if datas[i].endswith(b"\n") else datas[i] + b"\n" for i in chosen]
    counts = np.array([part.count(b"\n") for part in parts])
    buffer = b"".join(parts)
    schema = pa.schema(
        [(name, pa.string()) for name in STRING_FIELDS]
        + [("seed", pa.int64()), ("score", pa.float64()), ("n_examples", pa.int64())]
    )
    try:
        table = pj.read_json(
            io.BytesIO(buffer),
            read_options=pj.ReadOptions(use_threads=False, block_size=1 << 26),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return Block({}, [], list(range(len(datas))), [])
    if table.num_rows != int(counts.sum()):  # cannot map rows to lines: let the careful path do it
        return Block({}, [], list(range(len(datas))), [])
    ok, score = _checks(table, qa_convention)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    file_of_row = np.repeat(np.array(chosen), counts)
    line_of_row = np.arange(table.num_rows) - np.repeat(starts, counts) + 1
    slow_lines = []
    for row in np.flatnonzero(~ok).tolist():
        position, line = int(file_of_row[row]), int(line_of_row[row])
        slow_lines.append((position, line, datas[position].split(b"\n")[line - 1]))
    keep = np.flatnonzero(ok)
    codes, vocab = {}, {}
    for name in ("split", "arm", "target", "lang"):
        encoded = pc.dictionary_encode(table.column(name).take(keep)).combine_chunks()
        codes[name] = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        vocab[name] = encoded.dictionary.to_pylist()
    # one integer per (split, arm, target); a stable sort keeps file and line order inside each group
    group = (codes["split"].astype(np.int64) * len(vocab["arm"]) + codes["arm"]) * len(vocab["target"]) + codes[
        "target"
    ]
    order = np.argsort(group, kind="stable")
    seed = table.column("seed").take(keep).to_numpy(zero_copy_only=False).astype(np.int64)[order]
    columns = (
        codes["lang"][order],
        score[keep][order],
        file_of_row[keep][order].astype(np.int32),
        line_of_row[keep][order].astype(np.int32),
    )
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    groups = {}
    for start, stop in zip(np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(order)]]).tolist()):
        if start == stop:
            continue
        code = int(group[order[start]])
        split_i, rest = divmod(code, len(vocab["arm"]) * len(vocab["target"]))
        arm_i, target_i = divmod(rest, len(vocab["target"]))
        groups[(vocab["split"][split_i], vocab["arm"][arm_i], vocab["target"][target_i])] = (
            seed[start:stop],
            *(c[start:stop] for c in columns),
        )
    return Block(groups, vocab["lang"], slow_files, slow_lines)


def _checks(table: Any, qa_convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(row passes every check of `parse_record`, the score recomputed from its metrics)."""
    import pyarrow as pa  # heavy: pyarrow
    import pyarrow.compute as pc  # heavy: pyarrow

    n = table.num_rows
    score = np.full(n, np.nan)
    if "metrics" not in table.column_names or not pa.types.is_struct(table.schema.field("metrics").type):
        return np.zeros(n, dtype=bool), score
    metrics = table.column("metrics").combine_chunks()
    names = [metrics.type.field(i).name for i in range(metrics.type.num_fields)]
    values: dict[str, np.ndarray] = {}
    ok = ~np.asarray(metrics.is_null().to_numpy(zero_copy_only=False))
    for i, name in enumerate(names):
        child = metrics.field(i)
        if not (pa.types.is_integer(child.type) or pa.types.is_floating(child.type)):
            ok[:] = False  # a metric that is not a number in some row: the per-record path says where
            return ok, score
        values[name] = child.cast(pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN
    present = np.zeros(n, dtype=bool)
    for array in values.values():
        present |= ~np.isnan(array)
        ok &= np.isnan(array) | np.isfinite(array)  # no null inside a file (`eligible`), so NaN means absent
    ok &= present  # at least one metric
    for name in STRING_FIELDS + ("seed", "score"):
        ok &= ~np.asarray(table.column(name).is_null().to_numpy(zero_copy_only=False))
    ok &= np.asarray(
        pc.fill_null(pc.greater(pc.utf8_length(table.column("arm")), 0), False).to_numpy(zero_copy_only=False)
    )
    ok &= np.asarray(
        pc.fill_null(pc.greater(pc.utf8_length(table.column("lang")), 0), False).to_numpy(zero_copy_only=False)
    )
    ok &= np.asarray(
        pc.fill_null(pc.is_in(table.column("split"), pa.array(EVAL_SPLITS)), False).to_numpy(zero_copy_only=False)
    )
    seed = table.column("seed").to_numpy(zero_copy_only=False)
    ok &= np.nan_to_num(seed.astype(float), nan=-1) >= 0
    n_examples = table.column("n_examples")
    ok &= np.asarray(pc.fill_null(pc.greater_equal(n_examples, 0), True).to_numpy(zero_copy_only=False))
    expected = pc.binary_join_element_wise(
        "eval",
        table.column("arm"),
        table.column("target"),
        pc.binary_join_element_wise("s", pc.cast(table.column("seed"), pa.string()), ""),
        table.column("lang"),
        ".",
    )
    ok &= np.asarray(pc.fill_null(pc.equal(table.column("key"), expected), False).to_numpy(zero_copy_only=False))
    stored = table.column("score").to_numpy(zero_copy_only=False)
    ok &= np.isfinite(stored)
    targets = table.column("target").to_numpy(zero_copy_only=False)
    known = np.zeros(n, dtype=bool)
    for target in set(targets[ok].tolist()):
        if target not in XTREME_R_TASKS:
            continue  # the per-record path names the unknown target
        rows = targets == target
        metric = get_task(target).metric

        def mean_of(terms: tuple[str, ...]) -> np.ndarray:
            if any(term not in values for term in terms):
                return np.full(n, np.nan)
            if len(terms) == 1:
                return values[terms[0]]
            return (values[terms[0]] + values[terms[1]]) / 2  # the same operations as language_score

        mine = mean_of(score_terms(metric, qa_convention))
        agrees = np.abs(stored - mine) <= SCORE_TOLERANCE
        if metric in QA_METRICS:  # the writer may have used the other QA convention
            other = "f1" if qa_convention == "em_f1" else "em_f1"
            agrees |= np.abs(stored - mean_of(score_terms(metric, other))) <= SCORE_TOLERANCE
        good = rows & ~np.isnan(mine) & agrees
        known |= good
        score[good] = mine[good]
    return ok & known, score


def read_block(results_dir: str, names: list[str], offset: int, qa_convention: str) -> dict[str, Any]:
    """Read, validate and group one rank's files: {'groups', 'langs', 'problems', 'n_records'}.

    JSON-lines files go through the column-wise reader (`parse_block`) together; what it
    cannot judge, and one-record .json files, record by record (`records.read_records`). Groups map
    (split, arm, target) to column arrays (`Columns` fields; lang as codes into 'langs'): numpy arrays
    pickle small and fast for the gather.
    """
    datas: list[bytes] = []
    for name in names:
        data = b""
        if name.endswith(".jsonl"):
            try:
                with open(os.path.join(results_dir, name), "rb") as handle:
                    data = handle.read()
            except OSError:
                pass  # the record-by-record path reports it
        datas.append(data)
    block = parse_block(datas, qa_convention) if any(datas) else Block({}, [], list(range(len(names))), [])
    slow: dict[GroupKey, list[tuple]] = {}
    problems: list[Problem] = []

    def keep(item: Record | Problem, position: int, line: int | None) -> None:
        if isinstance(item, Problem):
            problems.append(item)
        else:
            slow.setdefault((item.split, item.arm, item.target), []).append(
                (item.seed, item.lang, item.score, position + offset, line or 0)
            )

    for position in block.slow_files:
        for line, item in read_records(os.path.join(results_dir, names[position]), qa_convention=qa_convention):
            keep(item, position, line)
    for position, line, text in block.slow_lines:
        keep(parse_line(os.path.join(results_dir, names[position]), line, text, qa_convention), position, line)
    langs = list(block.langs)
    code = {lang: i for i, lang in enumerate(langs)}
    groups: dict[GroupKey, tuple] = {}
    for group, (seed, lang, score, file, line) in block.groups.items():
        groups[group] = (seed, lang, score, file + offset, line)
    for group, rows in slow.items():
        seeds, row_langs, scores, files, lines = zip(*rows)
        arrays: tuple[np.ndarray, ...] = (
            np.array(seeds, dtype=np.int64),
            np.array([code.setdefault(l, len(code)) for l in row_langs], dtype=np.int32),
            np.array(scores, dtype=np.float64),
            np.array(files, dtype=np.int32),
            np.array(lines, dtype=np.int32),
        )
        if group in groups:
            arrays = tuple(np.concatenate([a, b]) for a, b in zip(groups[group], arrays))
        groups[group] = arrays
    langs = list(code) if len(code) > len(langs) else langs
    n_records = sum(len(cols[0]) for cols in groups.values())
    return {"groups": groups, "langs": langs, "problems": problems, "n_records": n_records}
