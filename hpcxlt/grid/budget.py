"""How many training examples of a task each language gives when an arm sets a budget (`arms[].examples`).

    allocate(budget, sizes) -> {lang: examples}

A matched control needs equal amounts of multilingual data: the low-resource arm and its high-resource
counterpart get the same budget per kind of task, however many languages or rows each has. The budget
is spread as evenly as the data allows (water-filling): every language gets an equal share, a language
with fewer rows gives all it has and the rest goes to the others. Pure and deterministic, so `hpcxlt
plan` (from row counts) and the training cell (from the loaded data) arrive at the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping


def allocate(budget: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Examples per language: sum = min(budget, all rows); no language above its size; shares differ by at most one
    among languages that are not exhausted (the first ones in sorted order get the odd examples)."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    alloc = {lang: 0 for lang in sorted(sizes)}
    remaining = min(budget, sum(max(0, n) for n in sizes.values()))
    while remaining > 0:
        open_langs = [lang for lang in alloc if alloc[lang] < sizes[lang]]
        share, extra = divmod(remaining, len(open_langs))
        for i, lang in enumerate(open_langs):
            give = min(sizes[lang] - alloc[lang], share + (1 if i < extra else 0))
            alloc[lang] += give
            remaining -= give
    return alloc
