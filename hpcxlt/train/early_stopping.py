"""Dev selection and early stopping: the state a checkpoint carries so a resumed run selects and stops
exactly as an uninterrupted one ({metric, step, bad_evals, stopped}), and the rules that update it."""

from __future__ import annotations

from typing import Any

FRESH_SELECTION = {"metric": None, "step": None, "bad_evals": 0, "stopped": False}
"""Selection state before the first evaluation (checkpoints written before it had only 'metric' and 'step')."""


def improves(metric: float, best: float | None, greater_is_better: bool, min_delta: float) -> bool:
    if best is None:
        return True
    return metric > best + min_delta if greater_is_better else metric < best - min_delta


def kept_step(select_best: bool, selection: dict[str, Any]) -> int | None:
    """The step whose checkpoint is the result besides the last one (None when not selecting)."""
    return selection["step"] if select_best else None
