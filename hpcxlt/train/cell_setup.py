"""What a training cell trains, read from the experiment and the plan: hyperparameters, tasks and their
languages, and the cells whose models it starts from.

    cell_setup(cfg, cell) -> CellSetup    prelude_of(cell)    intermediate_of(cell)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcxlt.config import ExperimentConfig, TrainConfig, arm_train_config, target_train_config
from hpcxlt.grid.plan import Cell, key_stage
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import TaskSpec


@dataclass(frozen=True, kw_only=True)
class CellSetup:
    """What a training cell trains: hyperparameters, tasks, and languages per task."""

    train: TrainConfig
    """Merged hyperparameters (experiment defaults + arm or target overrides)."""
    specs: tuple[TaskSpec, ...]
    """Tasks trained (several for a multi-task intermediate arm)."""
    languages: dict[str, tuple[str, ...]]
    """Task -> training languages."""
    multi_task: bool
    """True for intermediate cells: shared encoder + one head per task, forward(task=...)."""
    examples: Mapping[str, int] = field(default_factory=dict)
    """Task -> training-example budget spread over its languages (the arm's `examples`; empty: all)."""


def cell_setup(cfg: ExperimentConfig, cell: Cell) -> CellSetup:
    """Hyperparameters, tasks and languages of a training cell."""
    if cell.stage == "intermediate":
        arm = cfg.arm(cell.arm)
        specs = tuple(get_task(t) for t in arm.tasks)
        languages = {s.name: tuple(arm.languages.get(s.name, s.train_languages)) for s in specs}
        return CellSetup(
            train=arm_train_config(cfg, arm),
            specs=specs,
            languages=languages,
            multi_task=True,
            examples=dict(arm.examples),
        )
    if cell.stage == "target":
        if not cell.target:
            raise ValueError(f"cell {cell.key}: a target cell names no target task")
        spec = get_task(cell.trains or cell.target)  # a prelude cell trains on its prelude task
        if not spec.has_training_data():
            raise ValueError(f"cell {cell.key}: task {spec.name!r} has no training data to fine-tune on")
        return CellSetup(
            train=target_train_config(cfg, cell.target),
            specs=(spec,),
            languages={spec.name: tuple(spec.train_languages)},
            multi_task=spec.format == "retrieval",
        )
    raise ValueError(f"cell {cell.key}: stage {cell.stage!r} is not a training stage (intermediate or target)")


def prelude_of(cell: Cell) -> str | None:
    """Key of the prelude target cell whose whole model (head included) this target cell continues."""
    deps = [d for d in cell.deps if key_stage(d) == "target"]
    return deps[0] if cell.stage == "target" and deps else None


def intermediate_of(cell: Cell) -> str | None:
    """Key of the intermediate cell a target cell starts from (None for the 'none' baseline)."""
    deps = [d for d in cell.deps if key_stage(d) == "intermediate"]
    if cell.stage != "target" or not deps:
        return None
    if len(deps) > 1:
        raise ValueError(f"cell {cell.key}: depends on several intermediate cells {deps}")
    return deps[0]
