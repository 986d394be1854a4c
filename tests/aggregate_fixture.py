"""Build small run directories by hand for the aggregate tests: a real config, plan and records.

A plain module (like slurm_fixture.py): the test modules import `make_run` from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcxlt.config import parse_config
from hpcxlt.grid.plan import plan
from hpcxlt.store import RunStore

QA_SPREAD = 4.0
"""QA records get EM = score - 4 and F1 = score + 4, so (EM + F1) / 2 == score and F1 == score + 4."""


def metrics_for(target: str, score: float) -> dict[str, float]:
    """Metrics in the record schema of `target` whose per-language score under (EM+F1)/2 is `score`."""
    from hpcxlt.tasks.registry import get_task

    metric = get_task(target).metric
    if metric in ("squad", "mlqa"):
        return {"exact_match": score - QA_SPREAD, "f1": score + QA_SPREAD}
    if metric == "seqeval_f1":
        return {"f1": score, "precision": score, "recall": score}
    if metric == "map_at_20":
        return {"map_at_20": score}
    return {"accuracy": score}


def record(arm: str, target: str, seed: int, lang: str, split: str, score: float) -> dict[str, Any]:
    return {
        "key": f"eval.{arm}.{target}.s{seed}.{lang}",
        "arm": arm,
        "target": target,
        "seed": seed,
        "lang": lang,
        "split": split,
        "metrics": metrics_for(target, score),
        "score": score,
        "n_examples": 100,
        "checkpoint": f"cells/target.{arm}.{target}.s{seed}/model",
        "config_hash": "test",
    }


def make_run(
    root: Path,
    *,
    arms: list[dict[str, Any]],
    targets: dict[str, list[str]],
    seeds: list[int],
    score: Callable[[str, str, int, str, str], float | None],
    splits: tuple[str, ...] = ("test",),
    qa_convention: str = "em_f1",
    layout: str = "files",
    stats: dict[str, Any] | None = None,
) -> RunStore:
    """Initialize a run directory and write one record per planned eval cell and split.

    `score(arm, target, seed, lang, split)` gives the per-language score; None writes no record.
    layout 'jobs' writes what evaluation jobs write (one results/<job>.jsonl per eval job, through the
    store), 'files' the one-record files earlier versions wrote (results/<key>.<split>.json), 'jsonl'
    one results/<arm>.jsonl shard per arm.
    """
    cfg = parse_config(
        {
            "name": "aggtest",
            "arms": arms,
            "targets": {"tasks": list(targets), "languages": {t: list(langs) for t, langs in targets.items()}},
            "seeds": seeds,
            "eval": {"splits": list(splits), "qa_convention": qa_convention},
            **({"stats": stats} if stats else {}),
        }
    )
    grid = plan(cfg)
    store = RunStore(root)
    store.initialize(cfg, grid)
    shards: dict[str, list[str]] = {}
    jobs: dict[str, list[dict[str, Any]]] = {}
    for cell in grid.stage_cells("eval"):
        for split in splits:
            value = score(cell.arm, cell.target, cell.seed, cell.lang, split)
            if value is None:
                continue
            rec = record(cell.arm, cell.target, cell.seed, cell.lang, split, value)
            if layout == "files":
                record_path(store, rec["key"], split).write_text(json.dumps(rec), encoding="utf-8")
            elif layout == "jobs":
                jobs.setdefault(grid.job_of(cell.key).key, []).append(rec)
            else:
                shards.setdefault(cell.arm, []).append(json.dumps(rec))
    for job_key, records in jobs.items():
        store.add_results(job_key, records)
    for arm, lines in shards.items():
        (store.results_dir / f"{arm}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return store


def record_path(store: RunStore, key: str, split: str) -> Path:
    """A one-record file of the layout earlier versions wrote (the aggregation still reads it)."""
    store.results_dir.mkdir(parents=True, exist_ok=True)
    return store.results_dir / f"{key}.{split}.json"


def rows(report_data: dict[str, Any], table: str, **match: Any) -> list[dict[str, Any]]:
    """Rows of one table in a report's JSON whose fields equal `match`."""
    return [r for r in report_data["tables"][table]["rows"] if all(r.get(k) == v for k, v in match.items())]


def row(report_data: dict[str, Any], table: str, **match: Any) -> dict[str, Any]:
    found = rows(report_data, table, **match)
    assert len(found) == 1, f"{table} {match}: {len(found)} rows"
    return found[0]


def score_book(store: RunStore, *, allow_partial: bool = False):
    """The ScoreBook of a run directory, gathered on one rank."""
    from hpcxlt.aggregate.gather import gather_records
    from hpcxlt.aggregate.mpi_world import World
    from hpcxlt.aggregate.score_book import ScoreBook, planned_eval_blocks

    cfg = store.load_config()
    gathered, _ = gather_records(store.results_dir, qa_convention=cfg.eval.qa_convention, world=World(rank=0, size=1))
    return ScoreBook(gathered, planned_eval_blocks(store.plan_path), cfg, allow_partial=allow_partial)


def table_json(table) -> dict[str, Any]:
    """A Table as the report's JSON has it, for `row`/`rows`."""
    return {"tables": {table.name: table.to_json()}}
