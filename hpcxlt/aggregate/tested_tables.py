"""The tables that answer "is this arm better?": Δ with a 95% interval, p, and what survives correction.

    tested_tables(book, store, split)  both tables below, their p-values corrected as one family (stats.family)
    significance(book, store, split)   arm vs 'none' and arm vs its `compare_to`, per target and over targets
    significance_by_resource(...)      arm vs `compare_to` per resource class of the target language

Every figure comes from `hpcxlt.aggregate.significance`: the per-seed Δ is the unit of model variance
(t with seeds - 1 degrees of freedom), and each language's test examples are bootstrapped, the same
draw for both arms and all seeds (and for every language of a target whose test set is one set
translated into each: the registry's `parallel_key`), from the stored test predictions (predictions/<arm>/s<seed>/ and
labels/, the official layout). No test pools different metrics: a row is one target, or the mean of
per-target Δs ("all targets", each target weighing the same). The p-values of both tables form one
family (`stats.family: question`, or one per table: `table`), corrected by `stats.correction`; `*`
marks the rows that survive at `stats.alpha`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcxlt.aggregate.score_book import COMPLETE, INCOMPLETE, PARTIAL, ScoreBook
from hpcxlt.aggregate.significance import PairedLanguage, adjust, aso_epsilon, combine, estimate, paired_draws, untested
from hpcxlt.aggregate.tables import RESOURCE_CLASSES, PValue, Table, make_table
from hpcxlt.evaluate.decompose import example_stats
from hpcxlt.evaluate.submission import SubmissionError, file_path, read_pair
from hpcxlt.grid.comparisons import VS_COMPARE_TO, VS_CONTROL, Comparison, comparisons, zero_shot
from hpcxlt.io import read_json
from hpcxlt.tasks.languages import resource_group
from hpcxlt.tasks.registry import get_task

ALL_TARGETS = "all targets"


class ExampleRows:
    """Per-example rows of the stored test predictions, read once per (arm, seed, target, lang)."""

    def __init__(self, store, qa_convention: str):
        self.store, self.qa_convention = store, qa_convention
        self._cache: dict[tuple[str, int, str, str], Any] = {}
        self._labelled: dict[tuple[str, str], bool] = {}

    def get(self, arm: str, seed: int, target: str, lang: str):
        """ExampleStats, or None when the prediction or label file is missing or unreadable."""

        if (target, lang) not in self._labelled:  # one look per language, not one per arm and seed
            self._labelled[(target, lang)] = file_path(self.store.labels_dir, target, lang).is_file()
        if not self._labelled[(target, lang)]:
            return None
        key = (arm, seed, target, lang)
        if key not in self._cache:
            try:
                labels, predictions = read_pair(
                    self.store.submission_dir(arm, seed), self.store.labels_dir, target, lang
                )
                self._cache[key] = example_stats(target, lang, labels, predictions, qa_convention=self.qa_convention)
            except (SubmissionError, FileNotFoundError, ValueError):
                self._cache[key] = None
        return self._cache[key]

    def groups(self, target: str, lang: str, keys) -> list[str] | None:
        """Each example's cluster (QA: its paragraph) as the evaluation recorded it; None when it did not
        (an older run, or a format without clusters): each example is then drawn on its own."""

        path = self.store.example_groups_path(target, lang)
        if keys is None or not path.is_file():
            return None
        try:
            found = read_json(path)
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict) or any(key not in found for key in keys):
            return None
        return [str(found[key]) for key in keys]


def _draws(book: ScoreBook, rows: ExampleRows, arm: str, other: str, target: str, langs: list[str]):
    """(Draws or None, seeds used, languages used, partial) of arm - other on one target."""
    seeds = sorted(set(book.planned[(arm, target)].seeds) & set(book.planned[(other, target)].seeds))
    pairs, used_seeds = [], set()
    partial = False
    for lang in langs:
        present = [
            s
            for s in seeds
            if rows.get(arm, s, target, lang) is not None and rows.get(other, s, target, lang) is not None
        ]
        if len(present) < len(seeds):
            partial = True
            if not book.allow_partial:
                return None, len(seeds), len(langs), False
        if not present:
            continue
        used_seeds |= set(present)
        pairs.append((lang, present))
    if not pairs:
        return None, len(seeds), len(langs), False
    common = sorted(set.intersection(*(set(p) for _, p in pairs)))
    if not common:
        return None, len(seeds), len(langs), False
    partial = partial or len(common) < len(seeds)
    parallel_key = get_task(target).parallel_key
    stats = []
    for lang, _ in pairs:
        first = rows.get(arm, common[0], target, lang)
        stats.append(
            PairedLanguage(
                score=first.score,
                a=[rows.get(arm, s, target, lang).rows for s in common],
                b=[rows.get(other, s, target, lang).rows for s in common],
                keys=first.keys if parallel_key == "id" else None,
                groups=rows.groups(target, lang, first.keys),
            )
        )
    rng = np.random.default_rng([book.cfg.stats.seed, zlib.crc32(f"{arm}|{other}|{target}|{','.join(langs)}".encode())])
    draws = paired_draws(stats, book.cfg.stats.bootstrap, rng, seeds=common, parallel=parallel_key is not None)
    return draws, len(common), len(pairs), partial


def _comparisons(book: ScoreBook, kinds: tuple[str, ...] = ()) -> list[Comparison]:
    """The config's comparisons (`hpcxlt.grid.comparisons`) whose arms are in the book, of `kinds` (all when empty)."""
    return [
        c
        for c in comparisons(book.cfg)
        if c.arm in book.arms and c.other in book.arms and (not kinds or c.kind in kinds)
    ]


def _interval(est) -> str:
    return f"{est.delta:+.2f} [{est.low:+.2f}, {est.high:+.2f}]"


@dataclass
class _Draft:
    """A tested table before its family is corrected: (row, Estimate or None, Draws or None) per comparison."""

    name: str
    title: str
    header: list[str]
    found: list[tuple[dict, Any, Any]]
    notes: list[str]


def _effect_sizes(draws) -> dict[str, Any]:
    """What a reviewer asks for beside the p-value (Dror et al. 2018; Bouthillier et al. 2021): each arm's
    per-seed scores, their mean and sd, Δ / sd of the per-seed Δ (Cohen's d_z over seeds) and P(A > B),
    the share of (seed of A, seed of B) pairs where A scored higher."""
    a, b, d = draws.a_per_seed, draws.b_per_seed, draws.per_seed
    sd = float(d.std(ddof=1)) if d.size > 1 else None

    def r(x):
        return None if x is None or not np.isfinite(x) else round(float(x), 4)

    return {
        "seed_ids": list(draws.seeds),
        "a_per_seed": [r(x) for x in a],
        "b_per_seed": [r(x) for x in b],
        "a_mean": r(a.mean()),
        "a_sd": r(a.std(ddof=1)) if a.size > 1 else None,
        "b_mean": r(b.mean()),
        "b_sd": r(b.std(ddof=1)) if b.size > 1 else None,
        "delta_over_seed_sd": r(d.mean() / sd) if sd else None,
        "p_a_beats_b": r(float((a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean())),
    }


def correct_family(drafts: list[_Draft], cfg) -> None:
    """Mark untested rows, then correct the tested ones' p-values as one family (stats.family 'question':
    every tested row of every table, which together answer the research question) or one per table."""
    families: list[list[tuple[dict, Any, Any]]] = []
    for draft in drafts:
        tested = []
        for row, est, draws in draft.found:
            if est is None:
                continue
            row.update(est.to_json(), **_effect_sizes(draws))
            why = row.pop("_untested", None) or untested(est, cfg.min_seeds)
            if why is None:
                tested.append((row, est, draws))
            else:  # descriptive: Δ and its interval, outside the family
                row.update(p=None, p_adjusted=None, significant=False, untested=why)
        if cfg.family == "table" or not families:
            families.append(tested)
        else:
            families[0].extend(tested)
    for family in families:
        adjusted = adjust([est.p for _, est, _ in family], cfg.correction)
        for (row, _, _), p_adj in zip(family, adjusted):
            row.update(p_adjusted=float(f"{p_adj:.4g}"), significant=bool(p_adj <= cfg.alpha), family_size=len(family))


def _finish(draft: _Draft, book: ScoreBook) -> Table:
    """Add ASO when asked and build the display rows of a draft whose family was corrected."""

    cfg = book.cfg.stats
    header, found = draft.header, draft.found
    tested = [(row, est, draws) for row, est, draws in found if est is not None and not row.get("untested")]
    for row, est, draws in tested:
        if cfg.aso and est.n_seeds >= 3:
            row["aso_epsilon"] = round(
                aso_epsilon(
                    draws, alpha=cfg.alpha, comparisons=row["family_size"], bootstrap=cfg.bootstrap, seed=cfg.seed
                ),
                4,
            )
    if cfg.aso:
        header = [*header, "ASO ε"]
    width = 5 if cfg.aso else 4  # the computed columns at the end
    rows, display = [], []
    statuses = {COMPLETE: 0, PARTIAL: 0, INCOMPLETE: 0}
    for row, est, _ in found:
        statuses[row["status"]] += 1
        rows.append(row)
        lead = [row[h] for h in header[:-width]]
        aso_cell = ((f"{row['aso_epsilon']:.2f}" if "aso_epsilon" in row else "n/a"),) if cfg.aso else ()
        if est is None:
            display.append((*lead, "—", PValue(None), PValue(None), "", *aso_cell))
        elif row.get("untested"):
            label = " (test set only)" if est.n_seeds < 2 else ""
            display.append((*lead, _interval(est) + label, PValue(None), PValue(None), "untested", *aso_cell))
        else:
            display.append(
                (
                    *lead,
                    _interval(est),
                    PValue(est.p),
                    PValue(row["p_adjusted"]),
                    "*" if row["significant"] else "",
                    *aso_cell,
                )
            )
    family = (
        f"this table's {len(tested)} tests"
        if cfg.family == "table"
        else f"the {tested[0][0]['family_size'] if tested else 0} tests of the research question's family "
        "(every tested row of the significance tables: stats.family 'question')"
    )
    untested_count = sum(1 for r, e, _ in found if e is not None and r.get("untested"))
    notes = [
        *draft.notes,
        f"Δ [95% interval]: mean over seeds of the per-seed Δ (mean over languages), t with Welch-Satterthwaite "
        f"degrees of freedom for the seeds' spread plus the test examples' shared paired-bootstrap variance "
        f"({cfg.bootstrap} draws, seed {cfg.seed}; one draw for all languages of a parallel test set); "
        "docs/statistics.md.",
        f"p: unadjusted; p adj.: {cfg.correction} over {family}; * = significant at {cfg.alpha} after "
        "correction. The JSON rows add each arm's per-seed scores, mean and sd, Δ / seed sd and P(A > B).",
        *(
            [
                f"untested: {untested_count} row(s) have fewer than stats.min_seeds = {cfg.min_seeds} common seeds "
                "or no finite standard error: Δ and its interval are shown (with one seed the interval holds the "
                "test set's variance alone, not the model's), without p-value or star, and they are not in the "
                "family."
            ]
            if untested_count
            else []
        ),
        *(
            [
                "ASO ε: Almost Stochastic Order of the per-seed scores (Dror et al. 2019, deepsig; 3+ seeds; "
                "ε < 0.5: the arm is almost stochastically better)."
            ]
            if cfg.aso
            else []
        ),
    ]
    return make_table(
        name=draft.name, title=draft.title, rows=rows, header=header, display=display, notes=notes, statuses=statuses
    )


def tested_tables(book: ScoreBook, store, split: str) -> dict[str, Table]:
    """The two significance tables, their p-values corrected as the config's family says, and the
    per-language appendix."""
    drafts = [significance(book, store, split), significance_by_resource(book, store, split)]
    correct_family(drafts, book.cfg.stats)
    tables = {draft.name: _finish(draft, book) for draft in drafts}
    tables["significance_languages"] = per_language(book, store, split)
    return tables


def per_language(book: ScoreBook, store, split: str) -> Table:
    """Appendix: every comparison's Δ per target language with its interval (seeds' spread plus that
    language's test-set bootstrap), marked unseen or seen; intervals only, no p-values (hundreds of rows
    would make a family no reader can correct for)."""
    header = ["comparison", "arm", "vs", "target", "lang", "zero-shot", "seeds", "Δ [95% interval]"]
    title = f"Appendix: Δ per target language ({split})"
    if split != "test":
        return Table(
            name="significance_languages",
            title=title,
            rows=(),
            header=tuple(header),
            display=(),
            notes=("per-example predictions are stored for the test split only",),
        )
    rows = ExampleRows(store, book.qa_convention)
    out, display = [], []
    statuses = {COMPLETE: 0, PARTIAL: 0, INCOMPLETE: 0}
    for comp in _comparisons(book):
        for target in book.targets:
            langs = list(book.planned[(comp.arm, target)].langs)
            unseen, _ = zero_shot(book.cfg, comp, langs)
            for lang in langs:
                draws, n_seeds, _, partial = _draws(book, rows, comp.arm, comp.other, target, [lang])
                est = estimate(draws, level=1 - book.cfg.stats.alpha) if draws is not None else None
                status = _status(draws, partial)
                statuses[status] += 1
                row = {
                    "comparison": comp.kind,
                    "arm": comp.arm,
                    "vs": comp.other,
                    "target": target,
                    "lang": lang,
                    "zero_shot": lang in unseen,
                    "seeds": n_seeds,
                    "status": status,
                }
                if est is not None:
                    row.update(
                        delta=round(est.delta, 4), low=round(est.low, 4), high=round(est.high, 4), se=round(est.se, 4)
                    )
                out.append(row)
                cell = "—" if est is None else _interval(est) + (" (test set only)" if est.n_seeds < 2 else "")
                display.append(
                    (
                        comp.kind,
                        comp.arm,
                        comp.other,
                        target,
                        lang,
                        "unseen" if lang in unseen else "seen",
                        n_seeds,
                        cell,
                    )
                )
    notes = (
        "Each language's Δ with its 95% interval (the seeds' spread plus that language's own test-set "
        "bootstrap); no p-values here: the tested rows are in the significance tables. 'seen': an arm of the "
        "comparison trained on the language in an intermediate task.",
    )
    return Table(
        name="significance_languages",
        title=title,
        rows=tuple(out),
        header=tuple(header),
        display=tuple(display),
        notes=notes,
        partial=bool(statuses[PARTIAL] or statuses[INCOMPLETE]),
        statuses=statuses,
    )


def _status(draws, partial: bool) -> str:
    return INCOMPLETE if draws is None else PARTIAL if partial else COMPLETE


def _target_rows(book: ScoreBook, rows: ExampleRows, comp: Comparison, extra: dict, langs_of) -> list:
    """The rows of one comparison: per target on its unseen languages, 'all targets' over them, then per
    target on the languages an arm trained on (shown apart, untested). `langs_of(target)` filters the
    target's planned languages (e.g. to a resource class); targets left with none get no row."""
    alpha = book.cfg.stats.alpha
    found, per_target, moved = [], [], {}

    def row(target: str, languages: str, draws, n_seeds: int, n_langs: int, status: str, **more) -> tuple:
        fields = {
            "comparison": comp.kind,
            "arm": comp.arm,
            "vs": comp.other,
            "target": target,
            **extra,
            "languages": languages,
            "langs": n_langs,
            "seeds": n_seeds,
            "status": status,
            **more,
        }
        return fields, estimate(draws, level=1 - alpha) if draws is not None else None, draws

    for target in book.targets:
        langs = langs_of(target)
        if not langs:
            continue
        unseen, seen = zero_shot(book.cfg, comp, langs)
        if seen:
            moved[target] = seen
        if not unseen:
            found.append(
                row(
                    target,
                    "unseen",
                    None,
                    0,
                    0,
                    INCOMPLETE,
                    untested="every language of this target was "
                    f"trained on by {comp.arm} or {comp.other}: no zero-shot evidence",
                )
            )
            continue
        draws, n_seeds, n_langs, partial = _draws(book, rows, comp.arm, comp.other, target, unseen)
        per_target.append(draws)
        found.append(row(target, "unseen", draws, n_seeds, n_langs, _status(draws, partial)))
    if len(per_target) > 1:
        usable = [d for d in per_target if d is not None]
        same = len(usable) == len(per_target) and len({d.resampled.shape[0] for d in usable}) == 1
        draws = combine(usable) if same else None
        n_langs = sum(len(zero_shot(book.cfg, comp, langs_of(t))[0]) for t in book.targets)
        found.append(
            row(
                ALL_TARGETS,
                "unseen",
                draws,
                draws.per_seed.shape[0] if draws is not None else 0,
                n_langs,
                _status(draws, False),
            )
        )
    for target, seen in moved.items():
        draws, n_seeds, n_langs, partial = _draws(book, rows, comp.arm, comp.other, target, seen)
        found.append(
            row(
                target,
                "seen: " + ", ".join(seen),
                draws,
                n_seeds,
                n_langs,
                _status(draws, partial),
                _untested=f"{', '.join(seen)}: trained on by {comp.arm} or {comp.other} in an intermediate "
                "task, so not zero-shot; shown apart, not tested",
            )
        )
    return found


def _header(*extra: str) -> list[str]:
    """The tested tables' columns; `extra` (a resource class) comes after the target."""
    return [
        "comparison",
        "arm",
        "vs",
        "target",
        *extra,
        "languages",
        "langs",
        "seeds",
        "Δ [95% interval]",
        "p",
        "p adj.",
        "sig.",
    ]


def significance(book: ScoreBook, store, split: str) -> _Draft:
    header = _header()
    title = f"Significance of arm differences ({split})"
    if split != "test":
        return _Draft(
            "significance",
            title,
            header,
            [],
            ["per-example predictions are stored for the test split only; run with --split test"],
        )
    rows = ExampleRows(store, book.qa_convention)
    found = []
    for comp in _comparisons(book):
        found += _target_rows(
            book, rows, comp, {}, lambda target, comp=comp: list(book.planned[(comp.arm, target)].langs)
        )
    notes = [] if found else ["no 'none' arm and no compare_to pair: nothing to compare"]
    notes.append(
        f"'{ALL_TARGETS}': the mean of the per-target Δs (each target weighs the same; different metrics "
        "are averaged as Δs, never pooled into one test)."
    )
    notes.append(
        "Zero-shot means unseen: the tested rows use the target languages neither arm trained on in an "
        "intermediate task; rows marked 'seen: ...' hold the others (e.g. English for arms with an English "
        "task, the low-resource arms' and the controls' own languages), shown apart and not tested."
    )
    return _Draft("significance", title, header, found, notes)


def significance_by_resource(book: ScoreBook, store, split: str) -> _Draft:
    """The research question: multilingual arm vs its English-only `compare_to`, per resource class of the target language."""

    header = _header("class")
    title = f"Multilingual arms vs English-only arms and matched controls by resource class, tested ({split})"
    pairs = _comparisons(book, (VS_COMPARE_TO, VS_CONTROL))
    if split != "test" or not pairs:
        why = (
            "per-example predictions are stored for the test split only; run with --split test"
            if split != "test"
            else "no arm sets compare_to or control: there is no pair to compare"
        )
        return _Draft("significance_resource", title, header, [], [why])
    rows = ExampleRows(store, book.qa_convention)
    found = []
    for comp in pairs:
        for group in RESOURCE_CLASSES:
            found += _target_rows(
                book,
                rows,
                comp,
                {"class": group},
                lambda target, comp=comp, group=group: [
                    lang for lang in book.planned[(comp.arm, target)].langs if resource_group(lang) == group
                ],
            )
    notes = [
        "Does low-resource multilingual data added to English intermediate training help, for which target "
        "languages, and more than as much high-resource data ('vs control')? Classes: Joshi et al. (2020) 0-2 "
        "low, 3-5 high. Targets without a language of a class have no row for it; 'all targets' is the mean of "
        "the per-target Δs of that class."
    ]
    return _Draft("significance_resource", title, header, found, notes)
