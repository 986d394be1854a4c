"""The aggregate tables, each as tidy rows (CSV/JSON) and display rows (terminal, markdown, LaTeX).

Tables: task scores (arm x target), per-language scores (target x language x arm), deltas against
the 'none' baseline with paired tests, XTREME-R score and category means per arm, the research-
question table (multilingual arm vs its English-only `compare_to`, split by language resource
class), and the best arm per target (Phang et al. 2020's "best intermediate task per target").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hpcxlt.aggregate.score_book import COMPLETE, INCOMPLETE, PARTIAL, ScoreBook, status_of
from hpcxlt.aggregate.seed_stats import PairedTest, SeedStat, paired, points
from hpcxlt.tasks.languages import resource_group
from hpcxlt.tasks.registry import get_task

RESOURCE_CLASSES = ("low", "high")
CATEGORY_LABELS = {
    "classification": "classification",
    "structured_prediction": "struct. pred.",
    "qa": "QA",
    "retrieval": "retrieval",
}


@dataclass(frozen=True)
class PValue:
    """A p-value cell (display only)."""

    value: float | None


@dataclass(frozen=True, kw_only=True)
class Table:
    """One output table."""

    name: str
    """File stem under tables/ and key in the JSON object."""
    title: str
    """Heading."""
    rows: tuple[dict[str, Any], ...]
    """Tidy rows, JSON-ready (figures as {'mean', 'std', 'n', 'n_planned', 'partial'} objects)."""
    header: tuple[str, ...]
    """Display column names."""
    display: tuple[tuple[Any, ...], ...]
    """Display rows: str, int, None, SeedStat, PairedTest (a signed difference) or PValue cells."""
    notes: tuple[str, ...] = ()
    """What a reader must know to read the table right."""
    partial: bool = False
    """True when some figure in it is incomplete (cells missing) or computed from fewer cells than planned."""
    statuses: dict[str, int] = field(default_factory=dict)
    """Figures per status: complete / partial / incomplete."""

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "partial": self.partial,
            "statuses": dict(self.statuses),
            "notes": list(self.notes),
            "rows": list(self.rows),
        }


def _table(
    name: str,
    title: str,
    rows: list[dict],
    header: Sequence[str],
    display: list[tuple],
    notes: Sequence[str],
    figures: Sequence[SeedStat | PairedTest],
) -> Table:
    statuses = {COMPLETE: 0, PARTIAL: 0, INCOMPLETE: 0}
    for figure in figures:
        statuses[status_of(figure)] += 1
    return make_table(name=name, title=title, rows=rows, header=header, display=display, notes=notes, statuses=statuses)


def make_table(
    *,
    name: str,
    title: str,
    rows: Sequence[dict],
    header: Sequence[str],
    display: Sequence[tuple],
    notes: Sequence[str],
    statuses: dict[str, int],
) -> Table:
    """A table, marked partial when any of its figures (`statuses`: figures per status) is partial or incomplete."""
    return Table(
        name=name,
        title=title,
        rows=tuple(rows),
        header=tuple(header),
        display=tuple(display),
        notes=tuple(notes),
        partial=bool(statuses[PARTIAL] or statuses[INCOMPLETE]),
        statuses=statuses,
    )


def _paired_over_seeds(book: ScoreBook, split: str, arm: str, other: str, target: str) -> PairedTest:
    """Task-score difference arm - other, paired by seed."""
    mine, theirs = book.task_by_seed(split, arm, target), book.task_by_seed(split, other, target)
    seeds = sorted(set(book.planned[(arm, target)].seeds) & set(book.planned[(other, target)].seeds))
    common = [s for s in seeds if s in mine and s in theirs]
    test = paired(
        [mine[s].value for s in common], [theirs[s].value for s in common], len(seeds), allow_partial=book.allow_partial
    )
    if test.mean is not None and not test.partial and any(mine[s].partial or theirs[s].partial for s in common):
        test = PairedTest(**{**test.__dict__, "partial": True})
    return test


# --- (a) task scores and per-language scores ------------------------------------------------------


def task_scores(book: ScoreBook, split: str) -> Table:
    rows, display, figures = [], [], []
    for arm in book.arms:
        line: list[Any] = [arm]
        for target in book.targets:
            stat = book.task_stat(split, arm, target)
            figures.append(stat)
            rows.append({"arm": arm, "target": target, "score": stat.to_json(), "status": status_of(stat)})
            line.append(stat)
        display.append(tuple(line))
    notes = []
    for target in book.targets:
        planned = {len(book.planned[(arm, target)].langs) for arm in book.arms}
        total = len(get_task(target).languages)
        if max(planned) < total:
            notes.append(
                f"{target}: the plan evaluates {max(planned)} of its {total} languages; its task score is "
                "over those and not comparable to published XTREME-R figures"
            )
    return _table(
        "task_scores",
        f"Task scores per arm ({split}; mean ± std over seeds (n))",
        rows,
        ["arm", *book.targets],
        display,
        notes,
        figures,
    )


def language_scores(book: ScoreBook, split: str) -> Table:

    rows, display, figures = [], [], []
    for target in book.targets:
        langs = list(dict.fromkeys(lang for arm in book.arms for lang in book.planned[(arm, target)].langs))
        for lang in langs:
            group = resource_group(lang)
            line: list[Any] = [target, lang, group]
            for arm in book.arms:
                if lang not in book.planned[(arm, target)].langs:
                    line.append(None)
                    continue
                stat = book.lang_stat(split, arm, target, lang)
                figures.append(stat)
                rows.append(
                    {
                        "arm": arm,
                        "target": target,
                        "lang": lang,
                        "resource": group,
                        "score": stat.to_json(),
                        "status": status_of(stat),
                    }
                )
                line.append(stat)
            display.append(tuple(line))
    return _table(
        "languages",
        f"Per-language scores ({split}; mean ± std over seeds (n))",
        rows,
        ["target", "lang", "class", *book.arms],
        display,
        [],
        figures,
    )


# --- (b) deltas against the baseline --------------------------------------------------------------


def deltas(book: ScoreBook, split: str) -> Table:
    notes = [
        "Δ task: arm − none task score, paired by seed (mean ± std over seeds (n)).",
        "Δ per pair: per-language scores matched on (seed, language), mean ± std (pairs). Pairs of one seed share a "
        "model, so they are no independent samples and get no test here: the significance table tests each Δ.",
    ]
    if book.baseline is None:
        return _table(
            "deltas",
            "Deltas against 'none'",
            [],
            ["arm", "target"],
            [],
            ["no arm named 'none' in this experiment: nothing to compare against"],
            [],
        )
    rows, display, figures = [], [], []
    for arm in book.arms:
        if arm == book.baseline:
            continue
        for target in book.targets:
            by_seed = _paired_over_seeds(book, split, arm, book.baseline, target)
            langs = book.planned[(arm, target)].langs
            a, b, n_planned = book.lang_pairs(split, arm, book.baseline, target, langs)
            pairs = paired(a, b, n_planned, allow_partial=book.allow_partial)
            score, base = book.task_stat(split, arm, target), book.task_stat(split, book.baseline, target)
            figures += [by_seed, pairs]
            rows.append(
                {
                    "arm": arm,
                    "target": target,
                    "score": score.to_json(),
                    "baseline": base.to_json(),
                    "delta": by_seed.to_json(),
                    "pairs": pairs.to_json(),
                    "status": _worst(status_of(by_seed), status_of(pairs)),
                }
            )
            display.append((arm, target, score, base, by_seed, pairs.n, pairs))
    header = ["arm", "target", "score", "none", "Δ task", "pairs", "Δ per pair"]
    return _table("deltas", f"Deltas against 'none' ({split})", rows, header, display, notes, figures)


def _worst(*statuses: str) -> str:
    for status in (INCOMPLETE, PARTIAL):
        if status in statuses:
            return status
    return COMPLETE


# --- (c) XTREME-R score and category means --------------------------------------------------------


def xtreme_r(book: ScoreBook, split: str) -> Table:
    rows, display, figures = [], [], []
    for arm in book.arms:
        stats = book.suite_stats(split, {target: arm for target in book.targets})
        figures += [stat for stat in stats.values() if stat is not None]
        rows.append(
            {
                "arm": arm,
                **{name: stat.to_json() if stat else None for name, stat in stats.items()},
                "status": status_of(stats["xtreme_r"]),
            }
        )
        display.append((arm, *(stat if stat else "n/a" for stat in stats.values())))
    have = [t for t in book.xtreme_r_tasks if t in book.targets]
    notes = [
        f"XTREME-R score = mean of the ten task scores (Ruder et al. 2021); categories = mean of their tasks; "
        f"QA task score = {'(EM + F1) / 2' if book.qa_convention == 'em_f1' else 'F1'}."
    ]
    if len(have) < len(book.xtreme_r_tasks):
        missing = [t for t in book.xtreme_r_tasks if t not in book.targets]
        notes.append(
            f"this experiment has {len(have)} of the ten XTREME-R tasks (not: {', '.join(missing)}); "
            "the XTREME-R score and incomplete categories need --partial"
        )
    header = ["arm", "XTREME-R", *(CATEGORY_LABELS[c] for c in book.categories)]
    return _table("xtreme_r", f"XTREME-R score and category means ({split})", rows, header, display, notes, figures)


# --- (d) the research question: low vs high resource -------------------------------------------


def resource(book: ScoreBook, split: str) -> Table:

    pairs_of = [(arm.name, arm.compare_to) for arm in book.cfg.arms if arm.compare_to]
    notes = [
        "Does adding low-resource multilingual data to English intermediate training help, and where? Each arm is "
        "compared with its English-only `compare_to` arm on matched (seed, language) cells, split by the "
        "language's resource class (Joshi et al. 2020 classes 0-2 low, 3-5 high).",
        "Δ: mean paired difference ± std (pairs), descriptive: the tested comparison by resource class is the "
        "next table (no test pools different tasks' metrics).",
    ]
    if not pairs_of:
        return _table(
            "resource",
            "Multilingual vs English-only arms by resource class",
            [],
            ["arm"],
            [],
            ["no arm sets compare_to: there is no multilingual/English-only pair to compare"],
            [],
        )
    rows, display, figures = [], [], []
    base = book.baseline
    for arm, other in pairs_of:
        for target in book.targets:
            targets = (target,)
            for group in RESOURCE_CLASSES:
                tests: dict[str, PairedTest | None] = {}
                n_langs = 0
                for name, (x, y) in {
                    "vs_compare": (arm, other),
                    "arm_vs_none": (arm, base),
                    "compare_vs_none": (other, base),
                }.items():
                    if y is None:
                        tests[name] = None
                        continue
                    a: list[float] = []
                    b: list[float] = []
                    n_planned = 0
                    n_langs = 0
                    for t in targets:
                        langs = [l for l in book.planned[(arm, t)].langs if resource_group(l) == group]
                        n_langs += len(langs)
                        xa, xb, xn = book.lang_pairs(split, x, y, t, langs)
                        a += xa
                        b += xb
                        n_planned += xn
                    tests[name] = paired(a, b, n_planned, allow_partial=book.allow_partial) if n_planned else None
                if n_langs == 0:
                    continue  # no language of this class in this target
                main = tests["vs_compare"]
                figures += [t for t in tests.values() if t is not None]
                rows.append(
                    {
                        "arm": arm,
                        "compare_to": other,
                        "target": target,
                        "resource": group,
                        "languages": n_langs,
                        **{name: (t.to_json() if t else None) for name, t in tests.items()},
                        "status": status_of(main),
                    }
                )
                display.append(
                    (arm, other, target, group, n_langs, main, tests["arm_vs_none"], tests["compare_vs_none"])
                )
    if base is None:
        notes.append("no 'none' arm: the columns against the baseline are empty")
    header = ["arm", "vs", "target", "class", "langs", "Δ vs compare_to", "Δ arm vs none", "Δ compare_to vs none"]
    return _table(
        "resource",
        f"Multilingual vs English-only arms by resource class ({split})",
        rows,
        header,
        display,
        notes,
        figures,
    )


# --- (e) best arm per target ------------------------------------------------------------------------


def _xtreme_r(book: ScoreBook, split: str, choice: dict[str, str]) -> SeedStat:
    """The XTREME-R suite score of `choice` (suite_stats always has it; only categories may be None)."""
    stat = book.suite_stats(split, choice)["xtreme_r"]
    if stat is None:
        raise ValueError(f"{split}: the suite statistics have no XTREME-R score")
    return stat


def best_arm(book: ScoreBook, split: str) -> Table:
    candidates = [arm for arm in book.arms if arm != book.baseline]
    if not candidates:
        return _table("best_arm", "Best arm per target", [], ["target"], [], ["no intermediate arm to choose from"], [])
    dev_planned = "dev" in book.splits
    rows: list[dict[str, Any]] = []
    display: list[tuple[Any, ...]] = []
    figures: list[SeedStat | PairedTest] = []
    choice: dict[str, str] = {}
    oracle = False
    for target in book.targets:
        scored = {arm: book.task_stat(split, arm, target) for arm in candidates}
        by = split
        select = scored
        if split != "dev" and dev_planned:
            on_dev = {arm: book.task_stat("dev", arm, target) for arm in candidates}
            if all(stat.mean is not None for stat in on_dev.values()):
                by, select = "dev", on_dev
        usable = {arm: stat for arm, stat in select.items() if stat.mean is not None}
        if not usable or (len(usable) < len(candidates) and not book.allow_partial):
            rows.append({"target": target, "best_arm": None, "selected_by": None, "status": INCOMPLETE})
            display.append((target, None, None, None, None, None))
            figures.append(SeedStat(mean=None, std=None, n=0, n_planned=len(book.seeds), partial=False))
            continue
        best = max(usable, key=lambda arm: (usable[arm].mean, -book.arms.index(arm)))  # ties: first in config
        choice[target] = best
        oracle = oracle or by == "test"
        label = "dev" if by == "dev" else f"{by} (oracle)" if by == "test" else by
        score = scored[best]
        base = book.task_stat(split, book.baseline, target) if book.baseline else None
        delta = _paired_over_seeds(book, split, best, book.baseline, target) if book.baseline else None
        figures.append(score)
        if delta:
            figures.append(delta)
        rows.append(
            {
                "target": target,
                "best_arm": best,
                "selected_by": label,
                "selection_score": points(usable[best].mean),
                "score": score.to_json(),
                "baseline": base.to_json() if base else None,
                "delta": delta.to_json() if delta else None,
                "status": status_of(score) if delta is None else _worst(status_of(score), status_of(delta)),
            }
        )
        display.append((target, best, label, score, base, delta))
    suite = _xtreme_r(book, split, choice)
    figures.append(suite)
    rows.append(
        {
            "target": "XTREME-R",
            "best_arm": "best per target",
            "selected_by": None,
            "score": suite.to_json(),
            "status": status_of(suite),
        }
    )
    display.append(("XTREME-R", "best per target", None, suite, None, None))
    singles = {arm: _xtreme_r(book, split, {t: arm for t in book.targets}) for arm in book.arms}
    ranked = [arm for arm in candidates if singles[arm].mean is not None]
    if ranked:
        top = max(ranked, key=lambda arm: (singles[arm].mean, -book.arms.index(arm)))
        rows.append(
            {
                "target": "XTREME-R",
                "best_arm": f"best single arm: {top}",
                "selected_by": f"{split} (oracle)" if split == "test" else split,
                "score": singles[top].to_json(),
                "status": status_of(singles[top]),
            }
        )
        display.append(("XTREME-R", f"best single arm: {top}", None, singles[top], None, None))
    if book.baseline:
        base_suite = singles[book.baseline]
        rows.append(
            {
                "target": "XTREME-R",
                "best_arm": book.baseline,
                "selected_by": None,
                "score": base_suite.to_json(),
                "status": status_of(base_suite),
            }
        )
        display.append(("XTREME-R", book.baseline, None, base_suite, None, None))
    notes = [
        "Phang et al. (2020) report the best intermediate task per target; the XTREME-R row averages the "
        "chosen arm's task score per target."
    ]
    if oracle:
        notes.append(
            "Chosen by test score: this is oracle selection (it peeks at the test set) and overstates what a "
            "user could pick; plan eval.splits: [dev, test] to select on dev records instead."
        )
    elif split == "dev":
        notes.append("Scores shown are dev scores.")
    else:
        notes.append("Chosen by dev score (dev records), reported on test.")
    header = ["target", "best arm", "chosen by", "score", "none", "Δ vs none"]
    return _table("best_arm", f"Best arm per target ({split})", rows, header, display, notes, figures)


def build_tables(book: ScoreBook, split: str) -> list[Table]:
    """All tables, in reading order."""
    return [
        task_scores(book, split),
        language_scores(book, split),
        deltas(book, split),
        xtreme_r(book, split),
        resource(book, split),
        best_arm(book, split),
    ]
