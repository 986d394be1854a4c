"""The duplicate policy of the gather: one record per cell.

A cell (seed, language of one split, arm and target) may have several records after a job ran twice
(a requeue that wrote again, a copied file). The first in file order counts; a repeat with the same
score is noted in the report; a repeat with a different score drops the cell (neither is used) and is
a problem with both places named.
"""

from __future__ import annotations

import numpy as np

from hpcxlt.aggregate.columns import Columns, GroupKey
from hpcxlt.aggregate.records import Problem
from hpcxlt.grid.plan import eval_key


def resolve_duplicates(
    group: GroupKey,
    cols: Columns,
    vocab: tuple[str, ...],
    files: tuple[str, ...],
    problems: list[Problem],
    duplicates: list[str],
) -> Columns:
    """One record per cell: the first in file order; a repeat with the same score is noted, a different
    score drops the cell (neither is used) and is a problem. Rare, so plain Python."""

    def where(file: int, line: int) -> str:
        return files[file] if not line else f"{files[file]}:{line}"

    order = np.lexsort((cols.line, cols.file)).tolist()
    first: dict[tuple[int, int], int] = {}
    conflicted: set[tuple[int, int]] = set()
    for row in order:
        cell = (int(cols.seed[row]), int(cols.lang[row]))
        if cell in conflicted:
            continue
        if cell not in first:
            first[cell] = row
            continue
        kept = first[cell]
        here, there = where(int(cols.file[row]), int(cols.line[row])), where(int(cols.file[kept]), int(cols.line[kept]))
        if cols.score[row] == cols.score[kept]:
            duplicates.append(f"{here} repeats {there} (same score; ignored)")
            continue
        split, arm, target = group
        key = eval_key(arm, target, int(cell[0]), vocab[cell[1]])
        problems.append(
            Problem(
                path=files[int(cols.file[row])],
                line=int(cols.line[row]) or None,
                message=f"conflicting records for {key} ({split}): {float(cols.score[row])} here, "
                f"{float(cols.score[kept])} in {there}; neither is used",
                key=key,
                split=split,
            )
        )
        conflicted.add(cell)
        del first[cell]
    rows = sorted(first.values())
    return Columns(*(array[rows] for array in cols))
