"""Load an experiment and check it against the task registry (names, languages)."""

from __future__ import annotations

import difflib
import os

from hpcxlt.config import ConfigError, ExperimentConfig, load_config
from hpcxlt.config.load import arm_train_config, blame, target_train_config
from hpcxlt.tasks.registry import TASKS


def _unknown(kind: str, name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; allowed: {', '.join(sorted(allowed))}"


def check_experiment(cfg: ExperimentConfig) -> None:
    """Raise ConfigError (with the key path) for task names or languages the registry does not know."""
    intermediate = sorted(name for name, spec in TASKS.items() if spec.role == "intermediate")
    targets = sorted(name for name, spec in TASKS.items() if spec.role == "target")
    for i, arm in enumerate(cfg.arms):
        for j, task in enumerate(arm.tasks):
            if task not in intermediate:
                raise ConfigError(f"arms[{i}].tasks[{j}]: {_unknown('intermediate task', task, intermediate)}")
        for task, langs in arm.languages.items():
            allowed = list(TASKS[task].train_languages)
            for lang in langs:
                if lang not in allowed:
                    raise ConfigError(
                        f"arms[{i}].languages.{task}: {task} has no training data in {lang!r}; allowed: {', '.join(allowed)}"
                    )
        for key in arm.sampling.weights:
            task, _, lang = key.partition(":")
            if task not in arm.tasks or (lang and lang not in TASKS[task].train_languages):
                raise ConfigError(
                    f"arms[{i}].sampling.weights.{key}: expected one of the arm's tasks {list(arm.tasks)} "
                    "or 'task:lang' with one of that task's training languages"
                )
    for j, task in enumerate(cfg.targets.tasks):
        if task not in targets:
            raise ConfigError(f"targets.tasks[{j}]: {_unknown('XTREME-R target task', task, targets)}")
    for task, langs in cfg.targets.languages.items():
        allowed = list(TASKS[task].languages)
        if not langs:
            raise ConfigError(
                f"targets.languages.{task}: must list at least one language (or leave {task} out to use all)"
            )
        for lang in langs:
            if lang not in allowed:
                raise ConfigError(
                    f"targets.languages.{task}: {task} is not evaluated in {lang!r}; allowed: {', '.join(allowed)}"
                )
    for task, prelude in cfg.targets.preludes.items():
        for j, name in enumerate(prelude):
            if name not in TASKS:
                raise ConfigError(f"targets.preludes.{task}[{j}]: {_unknown('task', name, sorted(TASKS))}")
            first, then = TASKS[name], TASKS[task]
            if first.format != then.format or "en" not in first.train_languages or not then.has_training_data():
                raise ConfigError(
                    f"targets.preludes.{task}[{j}]: {name!r} cannot come before {task!r}: a prelude needs English "
                    f"training data in the target's format ({then.format}) and a target with training data"
                )
    for task in cfg.cost.train_examples:
        if task not in TASKS:
            raise ConfigError(f"cost.train_examples.{task}: {_unknown('task', task, sorted(TASKS))}")
    from hpcxlt.grid.comparisons import check_zero_shot  # grid.plan imports this module's registry checks
    from hpcxlt.grid.plan import arm_languages, dev_splits  # deferred: as above

    for i, arm in enumerate(cfg.arms):
        train = None if arm.is_baseline else arm_train_config(cfg, arm)
        if train and train.eval_every and train.select_by != "last" and not dev_splits(arm_languages(cfg, arm.name)):
            raise ConfigError(
                f"arms[{i}] ({arm.name}): select_by {train.select_by!r} evaluates a dev split every "
                f"{train.eval_every} steps, and none of its tasks {list(arm.tasks)} has one in its dev language; "
                "allowed: select_by 'last', or eval_every 0, for this arm"
            )
    for task in cfg.targets.tasks:
        train = target_train_config(cfg, task)
        for trained in (*cfg.targets.preludes.get(task, ()), task):
            if not TASKS[trained].has_training_data() or not train.eval_every or train.select_by == "last":
                continue
            if not dev_splits({trained: ("en",)}):
                raise ConfigError(
                    f"targets.overrides.{task}: select_by {train.select_by!r} evaluates {trained}'s English dev split "
                    f"every {train.eval_every} steps, and {trained} has none; allowed: select_by 'last', or "
                    "eval_every 0, for this target"
                )
    check_zero_shot(cfg, "arms")


def load_experiment(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load, validate and registry-check an experiment config; errors name the file and key path."""
    cfg = load_config(path, overrides)
    try:
        check_experiment(cfg)
    except ConfigError as err:
        raise blame(path, overrides, err) from None
    return cfg
