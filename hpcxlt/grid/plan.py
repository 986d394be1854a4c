"""Pure grid planning: an experiment config -> a DAG of cells and the jobs that run them.

No I/O and no heavy imports: `plan(cfg) == plan(cfg)` always, and `hpcxlt plan` runs on a login node
in a blink. A cell's fingerprint hashes the config slice that affects it plus its dependencies'
fingerprints (Merkle style), so changing one target's hyperparameters changes exactly that target's
cells and the evaluations downstream of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hpcxlt.config import (
    ExperimentConfig,
    arm_train_config,
    config_to_dict,
    target_train_config,
)
from hpcxlt.tasks.registry import get_task

STAGES = ("intermediate", "target", "eval")


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One unit of work with a stable key: an intermediate run, a target run or one language's evaluation."""

    key: str
    """Stable readable key, e.g. 'target.mnli.xnli.s1'."""
    stage: str
    """'intermediate', 'target' or 'eval'."""
    arm: str
    """Intermediate arm name ('none' for the baseline)."""
    seed: int
    """Random seed."""
    target: str | None = None
    """Target task (None for intermediate cells)."""
    trains: str | None = None
    """Task a target cell fine-tunes on when that is not the target itself: a prelude (siqa before xcopa)."""
    lang: str | None = None
    """Evaluation language (eval cells only)."""
    deps: tuple[str, ...] = ()
    """Keys of the cells this one needs finished first."""
    fingerprint: str = ""
    """Hash of everything that determines this cell's result."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.stage,
            "arm": self.arm,
            "seed": self.seed,
            "target": self.target,
            "trains": self.trains,
            "lang": self.lang,
            "deps": list(self.deps),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**{**data, "deps": tuple(data["deps"])})


@dataclass(frozen=True, kw_only=True)
class Job:
    """What one scheduler task runs: one training cell, or the evaluation cells that share one model."""

    key: str
    """Stable key (the training cell's key, or 'eval.<arm>.<task>.s<seed>[.<chunk>]')."""
    stage: str
    """Stage of its cells."""
    cells: tuple[str, ...]
    """Keys of the cells it runs, in order."""
    deps: tuple[str, ...] = ()
    """Keys of the jobs that must finish first (element-wise: only its own upstream jobs)."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The whole grid of an experiment."""

    cells: tuple[Cell, ...]
    """Every cell, stages in order intermediate -> target -> eval."""
    jobs: tuple[Job, ...]
    """Every job, in the same stage order."""

    def cell(self, key: str) -> Cell:
        return self._cells_by_key[key]

    def job(self, key: str) -> Job:
        return self._jobs_by_key[key]

    def job_of(self, cell_key: str) -> Job:
        """The job that runs a cell."""
        return self._job_of_cell[cell_key]

    # indexes built on first use (a frozen dataclass may still fill its __dict__): O(1) lookups, which
    # submission and status make for every cell and job of grids with a million cells
    @cached_property
    def _cells_by_key(self) -> dict[str, Cell]:
        return {cell.key: cell for cell in self.cells}

    @cached_property
    def _jobs_by_key(self) -> dict[str, Job]:
        return {job.key: job for job in self.jobs}

    @cached_property
    def _job_of_cell(self) -> dict[str, Job]:
        return {cell: job for job in self.jobs for cell in job.cells}

    def stage_cells(self, stage: str) -> list[Cell]:
        return [cell for cell in self.cells if cell.stage == stage]

    def stage_jobs(self, stage: str) -> list[Job]:
        return [job for job in self.jobs if job.stage == stage]

    def counts(self) -> dict[str, dict[str, int]]:
        return {stage: {"cells": len(self.stage_cells(stage)), "jobs": len(self.stage_jobs(stage))} for stage in STAGES}

    def to_dict(self) -> dict[str, Any]:
        """plan.json: training cells and jobs one by one, evaluation jobs as one entry each.

        An eval job's cells share arm, target, seed and upstream; only language and fingerprint differ,
        so they are stored as two lists and the keys are derived (`eval_key`). A million-cell grid's
        plan is then about a tenth of the size and reads in a fraction of the time.
        """
        eval_jobs = []
        for job in self.jobs:
            if job.stage != "eval":
                continue
            cells = [self.cell(key) for key in job.cells]
            first = cells[0]
            if any(
                c.target is None  # every eval cell has a target and a language
                or c.lang is None
                or (c.arm, c.target, c.seed, c.deps, c.key)
                != (first.arm, first.target, first.seed, job.deps, eval_key(c.arm, c.target, c.seed, c.lang))
                for c in cells
            ):
                raise ValueError(f"eval job {job.key}: its cells do not share arm, target, seed and upstream")
            eval_jobs.append(
                {
                    "key": job.key,
                    "arm": first.arm,
                    "target": first.target,
                    "seed": first.seed,
                    "deps": list(job.deps),
                    "langs": [c.lang for c in cells],
                    "fingerprints": [c.fingerprint for c in cells],
                }
            )
        return {
            "format": PLAN_FORMAT,
            "cells": [cell.to_dict() for cell in self.cells if cell.stage != "eval"],
            "jobs": [
                {"key": j.key, "stage": j.stage, "cells": list(j.cells), "deps": list(j.deps)}
                for j in self.jobs
                if j.stage != "eval"
            ],
            "eval_jobs": eval_jobs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """A plan from plan.json in this format or the earlier one (every cell and job one by one)."""
        cells = [Cell.from_dict(c) for c in data["cells"]]
        jobs = [
            Job(key=j["key"], stage=j["stage"], cells=tuple(j["cells"]), deps=tuple(j["deps"])) for j in data["jobs"]
        ]
        for entry in data.get("eval_jobs", ()):
            arm, target, seed, deps = entry["arm"], entry["target"], entry["seed"], tuple(entry["deps"])
            keys = tuple(eval_key(arm, target, seed, lang) for lang in entry["langs"])
            cells.extend(
                Cell(key=key, stage="eval", arm=arm, seed=seed, target=target, lang=lang, deps=deps, fingerprint=fp)
                for key, lang, fp in zip(keys, entry["langs"], entry["fingerprints"])
            )
            jobs.append(Job(key=entry["key"], stage="eval", cells=keys, deps=deps))
        return cls(cells=tuple(cells), jobs=tuple(jobs))


PLAN_FORMAT = 2
"""plan.json's layout: 2 stores each eval job as one entry (`Plan.to_dict`); 1 (no "format") listed every cell."""


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _eval_hasher(settings: dict[str, Any]) -> Callable[[str, str], Callable[[str], str]]:
    """`_hash({"stage": "eval", "from": dep_fp, "task": task, "lang": lang, "eval": settings})` for every
    eval cell, the same text hashed without building and serializing a dict per cell (most of `plan`'s
    time on a 100k-cell grid): the settings are serialized once, the keys written in sort_keys order, and
    a job's shared prefix hashed once. `eval_hasher(settings)(dep_fp, task)(lang)` is the fingerprint."""
    head = '{"eval":' + json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str) + ',"from":'

    def for_job(dep_fp: str, task: str) -> Callable[[str], str]:
        prefix = hashlib.sha256((head + json.dumps(dep_fp) + ',"lang":').encode("utf-8"))
        suffix = ',"stage":"eval","task":' + json.dumps(task) + "}"

        def fingerprint(lang: str) -> str:
            digest = prefix.copy()
            digest.update((json.dumps(lang) + suffix).encode("utf-8"))
            return digest.hexdigest()[:16]

        return fingerprint

    return for_job


def intermediate_key(arm: str, seed: int) -> str:
    return f"inter.{arm}.s{seed}"


def target_key(arm: str, task: str, seed: int, prelude: str | None = None) -> str:
    """'target.<arm>.<task>.s<seed>', and '...s<seed>.<prelude>' for a prelude of the target."""
    return f"target.{arm}.{task}.s{seed}" + (f".{prelude}" if prelude else "")


def eval_key(arm: str, task: str, seed: int, lang: str) -> str:
    return f"eval.{arm}.{task}.s{seed}.{lang}"


KEY_PREFIXES = {"inter": "intermediate", "target": "target", "eval": "eval"}
"""Cell-key prefix -> stage: the one reading of a key's stage (keys are built by the *_key functions above)."""


def key_stage(key: str) -> str | None:
    """The stage a cell key belongs to ('intermediate', 'target', 'eval'), None for anything else."""
    return KEY_PREFIXES.get(key.partition(".")[0])


def eval_languages(cfg: ExperimentConfig, task: str) -> tuple[str, ...]:
    """The languages `task` is evaluated in: the config's subset, else all of the registry's."""
    return tuple(cfg.targets.languages.get(task) or get_task(task).languages)


def arm_languages(cfg: ExperimentConfig, arm_name: str) -> dict[str, tuple[str, ...]]:
    """Intermediate task -> training languages used by an arm (the config's subset, else all)."""
    arm = cfg.arm(arm_name)
    return {task: tuple(arm.languages.get(task) or get_task(task).train_languages) for task in arm.tasks}


def dev_language(languages: tuple[str, ...]) -> str:
    """The one language whose dev split a training run evaluates on: English when it trains on English,
    else its first training language."""
    return "en" if "en" in languages else languages[0]


def dev_splits(languages: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Task -> the language of the dev split a training run evaluates it on (`dev_language`), for the tasks
    of `languages` (task -> training languages) that have a dev split there. A task without one is trained
    on and not dev-evaluated: tydiqa_lowres has none, since TyDiQA-GoldP's dev set is XTREME's TyDiQA test
    (`hpcxlt/tasks/registry.py`); the dev metric averages the others."""
    out = {}
    for task, langs in languages.items():
        lang = dev_language(langs)
        if get_task(task).has_split(lang, "dev"):
            out[task] = lang
    return out


def _chunks(items: tuple[str, ...], size: int) -> Iterable[tuple[str, ...]]:
    if size <= 0 or size >= len(items):
        yield items
        return
    for start in range(0, len(items), size):
        yield items[start : start + size]


def plan(cfg: ExperimentConfig) -> Plan:
    """Expand an experiment into cells and jobs. Pure: the same config always gives the same plan."""
    model = config_to_dict(cfg.model)
    data = {"source": cfg.data.source, "root": cfg.data.root}
    train_data = {**data, "max_train_examples": cfg.data.max_train_examples}
    eval_settings = {
        **data,
        "max_eval_examples": cfg.data.max_eval_examples,
        "splits": list(cfg.eval.splits),
        "retrieval_layer": cfg.eval.retrieval_layer,
    }
    cells: list[Cell] = []
    jobs: list[Job] = []
    inter_fp: dict[tuple[str, int], str] = {}
    eval_hash = _eval_hasher(eval_settings)

    for arm in cfg.arms:
        if arm.is_baseline:
            continue
        train = config_to_dict(arm_train_config(cfg, arm))
        for seed in cfg.seeds:
            key = intermediate_key(arm.name, seed)
            fp = _hash(
                {
                    "stage": "intermediate",
                    "model": model,
                    "data": train_data,
                    "tasks": list(arm.tasks),
                    "languages": arm_languages(cfg, arm.name),
                    "sampling": config_to_dict(arm.sampling),
                    "train": train,
                    "seed": seed,
                    # only when set, so arms without a budget keep the fingerprints (and done cells) they had
                    **({"examples": dict(sorted(arm.examples.items()))} if arm.examples else {}),
                }
            )
            inter_fp[(arm.name, seed)] = fp
            cells.append(Cell(key=key, stage="intermediate", arm=arm.name, seed=seed, fingerprint=fp))
            jobs.append(Job(key=key, stage="intermediate", cells=(key,)))

    # The model an arm's target/retrieval cells start from: its intermediate cell, or the pretrained model.
    def upstream(arm_name: str, seed: int) -> tuple[tuple[str, ...], str]:
        if cfg.arm(arm_name).is_baseline:
            return (), _hash({"pretrained": model})
        return (intermediate_key(arm_name, seed),), inter_fp[(arm_name, seed)]

    target_cells: list[Cell] = []
    eval_cells: list[Cell] = []
    eval_jobs: list[Job] = []
    for arm in cfg.arms:
        for task in cfg.targets.tasks:
            spec = get_task(task)
            train = config_to_dict(target_train_config(cfg, task))
            for seed in cfg.seeds:
                deps, dep_fp = upstream(arm.name, seed)
                # XTREME-R's XCOPA recipe: fine-tune on SIQA, then on COPA; each prelude is a cell of its own
                for prelude in cfg.targets.preludes.get(task, ()):
                    key = target_key(arm.name, task, seed, prelude)
                    fp = _hash(
                        {
                            "stage": "target",
                            "from": dep_fp,
                            "task": task,
                            "trains": prelude,
                            "data": train_data,
                            "train": train,
                            "seed": seed,
                        }
                    )
                    target_cells.append(
                        Cell(
                            key=key,
                            stage="target",
                            arm=arm.name,
                            seed=seed,
                            target=task,
                            trains=prelude,
                            deps=deps,
                            fingerprint=fp,
                        )
                    )
                    jobs.append(Job(key=key, stage="target", cells=(key,), deps=deps))
                    deps, dep_fp = (key,), fp
                if spec.has_training_data():
                    key = target_key(arm.name, task, seed)
                    fp = _hash(
                        {
                            "stage": "target",
                            "from": dep_fp,
                            "task": task,
                            "data": train_data,
                            "train": train,
                            "seed": seed,
                        }
                    )
                    target_cells.append(
                        Cell(key=key, stage="target", arm=arm.name, seed=seed, target=task, deps=deps, fingerprint=fp)
                    )
                    jobs_deps = tuple(d for d in deps)
                    jobs.append(Job(key=key, stage="target", cells=(key,), deps=jobs_deps))
                    deps, dep_fp = (key,), fp
                langs = eval_languages(cfg, task)
                eval_fp = eval_hash(dep_fp, task)
                for chunk_index, chunk in enumerate(_chunks(langs, cfg.eval.languages_per_job)):
                    keys = []
                    for lang in chunk:
                        key = eval_key(arm.name, task, seed, lang)
                        fp = eval_fp(lang)
                        eval_cells.append(
                            Cell(
                                key=key,
                                stage="eval",
                                arm=arm.name,
                                seed=seed,
                                target=task,
                                lang=lang,
                                deps=deps,
                                fingerprint=fp,
                            )
                        )
                        keys.append(key)
                    job_key = f"eval.{arm.name}.{task}.s{seed}"
                    if len(chunk) < len(langs):
                        job_key += f".{chunk_index}"
                    eval_jobs.append(Job(key=job_key, stage="eval", cells=tuple(keys), deps=deps))
    cells.extend(target_cells)
    cells.extend(eval_cells)
    jobs.extend(eval_jobs)
    return Plan(cells=tuple(cells), jobs=tuple(jobs))
