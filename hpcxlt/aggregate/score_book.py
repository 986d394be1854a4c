"""The gathered records held against the plan: what is there, what is missing, per-seed scores.

Everything the tables show is derived here from three facts: the planned eval cells (plan.json),
the records gathered from results/, and the completeness rule (`hpcxlt.aggregate.seed_stats`).

The definitions come from `hpcxlt.evaluate.scoring`, the code that scores an official submission:
each record's per-language score is `language_score` (computed on the reading ranks, under the
run's QA convention), the ten tasks are `XTREME_R_TASKS` and the categories `category_tasks()`.
What is left is plain means: task score = mean of its language scores, category / XTREME-R score
= mean of task scores. They are taken here from the per-language scores rather than by calling
`task_result` / `summarize` per seed, which re-derive every language score from its metrics (tens
of seconds for a million records); tests/test_aggregate_scores.py pins the two to the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hpcxlt.aggregate.gather import Gathered
from hpcxlt.aggregate.seed_stats import SeedStat, mean, over_seeds
from hpcxlt.config.schema import BASELINE_ARM, ExperimentConfig
from hpcxlt.evaluate.scoring import XTREME_R_TASKS, category_tasks
from hpcxlt.grid.plan import eval_key
from hpcxlt.store import RunDirError
from hpcxlt.store.run_dir import PLAN_RESTORE

EvalBlock = tuple[str, str, int, tuple[str, ...]]
"""(arm, target, seed, languages) of planned eval cells: one eval job's, or a single cell."""

COMPLETE, PARTIAL, INCOMPLETE = "complete", "partial", "incomplete"
"""Status of a figure: all planned cells; fewer (--partial); not computed (cells missing)."""


def status_of(stat: SeedStat | Any) -> str:
    if stat.mean is None:
        return INCOMPLETE
    return PARTIAL if stat.partial else COMPLETE


@dataclass(frozen=True, kw_only=True)
class SeedValue:
    """One figure for one seed."""

    value: float
    """Points."""
    partial: bool
    """Computed from fewer cells than planned (only with allow_partial)."""


@dataclass(frozen=True, kw_only=True)
class Planned:
    """The eval cells the plan has for one arm and target."""

    seeds: tuple[int, ...]
    """Planned seeds, ascending."""
    langs: tuple[str, ...]
    """Planned evaluation languages, in plan order."""
    cells: frozenset[tuple[int, str]] | None = None
    """The planned (seed, lang) pairs when they are not every seed x every language (None: the full product)."""

    def has(self, seed: int, lang: str) -> bool:
        if self.cells is not None:
            return (seed, lang) in self.cells
        return seed in self.seed_index and lang in self.lang_index

    @cached_property  # frozen dataclasses keep a __dict__, which cached_property writes to directly
    def seed_index(self) -> dict[int, int]:
        """Seed -> its row in the score matrix."""
        return {seed: i for i, seed in enumerate(self.seeds)}

    @cached_property
    def lang_index(self) -> dict[str, int]:
        """Language -> its column in the score matrix."""
        return {lang: j for j, lang in enumerate(self.langs)}

    @property
    def n_cells(self) -> int:
        return len(self.cells) if self.cells is not None else len(self.seeds) * len(self.langs)


def planned_eval_blocks(plan_path: str | os.PathLike) -> list[EvalBlock]:
    """The eval cells of plan.json as (arm, target, seed, languages) blocks, in plan order.

    Read from the JSON directly: `Plan.from_dict` builds a frozen Cell (with deps and fingerprint)
    per entry, which costs seconds for a million-cell grid whose tables need four fields. A plan of
    the current format lists one entry per eval job; an earlier one every cell.
    """

    try:
        data = orjson.loads(Path(plan_path).read_bytes())
        if "eval_jobs" in data:
            return [(j["arm"], j["target"], j["seed"], tuple(j["langs"])) for j in data["eval_jobs"]]
        return [(c["arm"], c["target"], c["seed"], (c["lang"],)) for c in data["cells"] if c["stage"] == "eval"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{plan_path}: not a plan written by `hpcxlt submit` (field {err} missing)") from None
    except orjson.JSONDecodeError as err:
        raise RunDirError(f"{plan_path} is not valid JSON ({err}); it holds {PLAN_RESTORE}") from None


class ScoreBook:
    """Scores of one run for the tables: per language, per task and seed, XTREME-R per seed.

    Each (split, arm, target) becomes a seed x language matrix of per-language scores (NaN where
    no usable record is), its axes in plan order, so every figure is computed in the same order
    whatever order the records were gathered in.
    """

    def __init__(
        self, gathered: Gathered, eval_blocks: Iterable[EvalBlock], cfg: ExperimentConfig, *, allow_partial: bool
    ):

        self.gathered = gathered
        self.cfg = cfg
        self.allow_partial = allow_partial
        self.qa_convention = cfg.eval.qa_convention
        self.splits = tuple(cfg.eval.splits)
        self.arms = tuple(arm.name for arm in cfg.arms)
        self.targets = tuple(cfg.targets.tasks)
        self.seeds = tuple(sorted(cfg.seeds))
        self.baseline = BASELINE_ARM if BASELINE_ARM in self.arms else None
        self.xtreme_r_tasks = XTREME_R_TASKS
        self.categories = category_tasks()
        # per (arm, target): seed -> its languages in plan order (a seed's eval jobs may split them)
        by_pair: dict[tuple[str, str], dict[int, list[str]]] = {}
        for arm, target, seed, block_langs in eval_blocks:
            by_pair.setdefault((arm, target), {}).setdefault(seed, []).extend(block_langs)
        self.planned: dict[tuple[str, str], Planned] = {}
        for pair, per_seed in by_pair.items():
            langs = tuple(dict.fromkeys(lang for seed_langs in per_seed.values() for lang in seed_langs))
            every = set(langs)
            product = all(
                len(seed_langs) == len(every) and set(seed_langs) == every for seed_langs in per_seed.values()
            )
            self.planned[pair] = Planned(
                seeds=tuple(sorted(per_seed)),
                langs=langs,
                cells=None if product else frozenset((seed, lang) for seed, ls in per_seed.items() for lang in ls),
            )
        self._matrix_cache: dict[tuple[str, str, str], Any] = {}
        self._task_cache: dict[tuple[str, str, str], dict[int, SeedValue]] = {}
        self._suite_cache: dict[tuple, dict[str, SeedStat | None]] = {}

    # -- cells ----------------------------------------------------------------------------------
    def matrix(self, split: str, arm: str, target: str):
        """seed x language array (planned seeds and languages, plan order) of scores; NaN = no usable record."""

        group = (split, arm, target)
        if group not in self._matrix_cache:
            planned = self.planned[(arm, target)]
            grid = np.full((len(planned.seeds), len(planned.langs)), np.nan)
            cols = self.gathered.columns.get(group) if split in self.splits else None
            if cols is not None and len(cols.seed):
                # vectorized: a million records fill their matrices in well under a second
                seeds = np.asarray(planned.seeds)
                i = np.searchsorted(seeds, cols.seed).clip(0, len(seeds) - 1)
                row_ok = seeds[i] == cols.seed
                lang_column = np.array([planned.lang_index.get(lang, -1) for lang in self.gathered.langs] or [-1])
                j = lang_column[cols.lang]
                ok = row_ok & (j >= 0)
                if planned.cells is not None:
                    ok &= np.array(
                        [
                            (s, self.gathered.langs[c]) in planned.cells
                            for s, c in zip(cols.seed.tolist(), cols.lang.tolist())
                        ],
                        dtype=bool,
                    )
                grid[i[ok], j[ok]] = cols.score[ok]
            self._matrix_cache[group] = grid
        return self._matrix_cache[group]

    def lang_stat(self, split: str, arm: str, target: str, lang: str) -> SeedStat:
        """One language's score over seeds."""

        planned = self.planned[(arm, target)]
        column = self.matrix(split, arm, target)[:, planned.lang_index[lang]]
        n_planned = len(planned.seeds) if planned.cells is None else sum(planned.has(s, lang) for s in planned.seeds)
        return over_seeds(column[~np.isnan(column)].tolist(), n_planned, allow_partial=self.allow_partial)

    def lang_pairs(
        self, split: str, arm: str, other: str, target: str, langs: Iterable[str]
    ) -> tuple[list[float], list[float], int]:
        """Scores of `arm` and `other` on matched (seed, lang) cells of `langs`, and the planned pair count.

        Pairs come in (seed, lang) order; a pair is planned when both arms plan the cell.
        """

        mine, theirs = self.planned[(arm, target)], self.planned[(other, target)]
        langs = [lang for lang in langs if lang in theirs.lang_index and lang in mine.lang_index]
        seeds = [seed for seed in mine.seeds if seed in theirs.seed_index]
        if not langs or not seeds:
            return [], [], 0
        pick = lambda p, m: m[np.ix_([p.seed_index[s] for s in seeds], [p.lang_index[l] for l in langs])]  # noqa: E731
        a, b = pick(mine, self.matrix(split, arm, target)), pick(theirs, self.matrix(split, other, target))
        planned = (
            np.array([[mine.has(s, l) and theirs.has(s, l) for l in langs] for s in seeds])
            if mine.cells is not None or theirs.cells is not None
            else np.ones(a.shape, dtype=bool)
        )
        both = planned & ~np.isnan(a) & ~np.isnan(b)
        return a[both].tolist(), b[both].tolist(), int(planned.sum())

    # -- task scores ----------------------------------------------------------------------------
    def task_by_seed(self, split: str, arm: str, target: str) -> dict[int, SeedValue]:
        """Seed -> task score: the mean over the planned languages (all of them unless allow_partial)."""
        cache_key = (split, arm, target)
        if cache_key not in self._task_cache:
            self._task_cache[cache_key] = self._task_by_seed(split, arm, target)
        return self._task_cache[cache_key]

    def _task_by_seed(self, split: str, arm: str, target: str) -> dict[int, SeedValue]:

        planned = self.planned.get((arm, target))
        if planned is None:
            return {}
        grid = self.matrix(split, arm, target)
        out: dict[int, SeedValue] = {}
        for i, seed in enumerate(planned.seeds):
            row = grid[i]
            present = row[~np.isnan(row)].tolist()
            n_planned = (
                sum(planned.has(seed, lang) for lang in planned.langs)
                if planned.cells is not None
                else len(planned.langs)
            )
            complete = len(present) == n_planned
            if not present or not (complete or self.allow_partial):
                continue
            out[seed] = SeedValue(value=mean(present), partial=not complete)
        return out

    def task_stat(self, split: str, arm: str, target: str) -> SeedStat:
        """Task score over seeds."""
        by_seed = self.task_by_seed(split, arm, target)
        planned = self.planned.get((arm, target))
        n_planned = len(planned.seeds) if planned else len(self.seeds)
        stat = over_seeds([by_seed[s].value for s in sorted(by_seed)], n_planned, allow_partial=self.allow_partial)
        return _or_partial(stat, any(v.partial for v in by_seed.values()))

    # -- XTREME-R -------------------------------------------------------------------------------
    def suite_by_seed(self, split: str, choice: Mapping[str, str]) -> dict[int, dict[str, SeedValue]]:
        """Seed -> {'xtreme_r', <category>...} for the model chosen per target (`choice`: target -> arm).

        XTREME-R needs all ten task scores of the seed and a category all of its tasks, unless
        allow_partial; then the means run over the task scores present and are marked partial.
        """
        out: dict[int, dict[str, SeedValue]] = {}
        groups = {"xtreme_r": self.xtreme_r_tasks, **self.categories}
        for seed in self.seeds:
            per_task: dict[str, SeedValue] = {}
            for target, arm in choice.items():
                value = self.task_by_seed(split, arm, target).get(seed)
                if value is not None and target in self.xtreme_r_tasks:
                    per_task[target] = value
            if not per_task:
                continue
            figures: dict[str, SeedValue] = {}
            for name, tasks in groups.items():
                have = [per_task[t] for t in tasks if t in per_task]
                complete = len(have) == len(tasks)
                if not have or not (complete or self.allow_partial):
                    continue
                figures[name] = SeedValue(
                    value=mean([v.value for v in have]), partial=not complete or any(v.partial for v in have)
                )
            out[seed] = figures
        return out

    def suite_stats(self, split: str, choice: Mapping[str, str]) -> dict[str, SeedStat | None]:
        """'xtreme_r' and each category -> its mean over seeds; None for a category none of whose tasks is a target."""
        cache_key = (split, tuple(sorted(choice.items())))
        if cache_key not in self._suite_cache:
            self._suite_cache[cache_key] = self._suite_stats(split, choice)
        return self._suite_cache[cache_key]

    def _suite_stats(self, split: str, choice: Mapping[str, str]) -> dict[str, SeedStat | None]:
        by_seed = self.suite_by_seed(split, choice)
        stats: dict[str, SeedStat | None] = {}
        for name in ("xtreme_r", *self.categories):
            if name != "xtreme_r" and not set(self.categories[name]) & set(self.targets):
                stats[name] = None
                continue
            values = [by_seed[s][name] for s in sorted(by_seed) if name in by_seed[s]]
            stat = over_seeds([v.value for v in values], len(self.seeds), allow_partial=self.allow_partial)
            stats[name] = _or_partial(stat, any(v.partial for v in values))
        return stats

    # -- gaps -----------------------------------------------------------------------------------
    def missing(self, split: str, store: Any | None = None) -> list[dict[str, Any]]:
        """Planned eval cells of `split` without a usable record, with their state and why."""

        why: dict[tuple[str, str | None], str] = {}
        for problem in self.gathered.problems:
            if problem.key is not None:
                why.setdefault((problem.key, problem.split), f"bad record {problem.where}: {problem.message}")
        out = []
        for arm in self.arms:
            for target in self.targets:
                planned = self.planned.get((arm, target))
                if planned is None:
                    continue
                for i, j in np.argwhere(np.isnan(self.matrix(split, arm, target))).tolist():
                    seed, lang = planned.seeds[i], planned.langs[j]
                    if not planned.has(seed, lang):
                        continue
                    key = eval_key(arm, target, seed, lang)
                    state = store.state(key).get("state") if store is not None else None
                    out.append(
                        {
                            "key": key,
                            "split": split,
                            "arm": arm,
                            "target": target,
                            "seed": seed,
                            "lang": lang,
                            "state": state,
                            "reason": why.get((key, split)) or why.get((key, None)) or "no record",
                        }
                    )
        return out

    def unplanned(self) -> list[dict[str, Any]]:
        """Records that no planned eval cell asks for (another config's leftovers); they are not used."""

        out = []
        for (split, arm, target), cols in self.gathered.columns.items():
            planned = self.planned.get((arm, target)) if split in self.splits else None
            if planned is not None and int((~np.isnan(self.matrix(split, arm, target))).sum()) == len(cols.seed):
                continue  # every record of the group filled a planned cell
            langs = self.gathered.langs
            for seed, lang, file, line in zip(
                cols.seed.tolist(), cols.lang.tolist(), cols.file.tolist(), cols.line.tolist()
            ):
                if planned is not None and planned.has(seed, langs[lang]):
                    continue
                path = self.gathered.files[file] + (f":{line}" if line else "")
                out.append({"key": eval_key(arm, target, seed, langs[lang]), "split": split, "path": path})
        out.sort(key=lambda u: (u["key"], u["split"]))
        return out


def _or_partial(stat: SeedStat, inputs_partial: bool) -> SeedStat:
    if stat.mean is None or not inputs_partial or stat.partial:
        return stat
    return SeedStat(mean=stat.mean, std=stat.std, n=stat.n, n_planned=stat.n_planned, partial=True)
