"""Made-up evaluation records in the format evaluation jobs write, for the benches that need a run with results
(bench/aggregate.py, bench/scale.py) without running the jobs: demo material, never read by a real run."""

from __future__ import annotations

from typing import Any

from hpcxlt.grid.plan import Cell
from hpcxlt.store import RunStore
from hpcxlt.store.run_dir import result_record
from hpcxlt.tasks.registry import get_task


def made_up_metrics(metric: str, score: float) -> dict[str, float]:
    """The metric names `metric` reports (evaluate/scoring.py), with values around `score`."""
    if metric in ("squad", "mlqa"):
        return {"exact_match": round(score - 4, 4), "f1": round(score + 4, 4)}
    if metric == "seqeval_f1":
        return {"f1": score}
    if metric == "map_at_20":
        return {"map_at_20": score}
    return {"accuracy": score}


def made_up_record(store: RunStore, cell: Cell, score: float, *, split: str = "test") -> dict[str, Any]:
    """One evaluation cell's record as `evaluate/eval_job.py` writes it, scored `score` on 1,000 examples."""
    checkpoint = store.model_dir(cell.deps[-1]).relative_to(store.root).as_posix() if cell.deps else "pretrained"
    metrics = made_up_metrics(get_task(cell.target or "").metric, score)
    return result_record(cell, split=split, metrics=metrics, score=score, n_examples=1000, checkpoint=checkpoint)
