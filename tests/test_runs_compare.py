"""Runs side by side: `hpcxlt runs` lists them, `hpcxlt compare` shows what differs (by hand-made runs)."""

from __future__ import annotations

import json

from hpcxlt.aggregate.aggregate_run import Options, aggregate
from tests.aggregate_fixture import make_run
from tests.launch_assets import run_cli

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]


def _two_runs(tmp_path):
    a = make_run(
        tmp_path / "runs" / "a",
        arms=ARMS,
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda arm, *_: 60.0 + (arm == "en"),
    )
    b = make_run(
        tmp_path / "runs" / "b",
        arms=ARMS,
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda arm, *_: 62.5 + (arm == "en"),
        stats={"bootstrap": 200},
    )
    for store in (a, b):
        for cell in store.load_plan().cells:
            if cell.stage != "eval":
                store.mark_done(cell.key)
        aggregate(store.root, Options(plots=False))
    return a, b


def test_runs_lists_each_run_with_its_progress(tmp_path):
    a, b = _two_runs(tmp_path)
    code, out = run_cli("runs", str(tmp_path / "runs"), "--json")
    rows = {r["run_dir"]: r for r in json.loads(out)["runs"]}
    assert code == 0 and set(rows) == {str(a.root), str(b.root)}
    plan = a.load_plan()
    assert rows[str(a.root)]["cells"] == len(plan.cells)
    assert rows[str(a.root)]["done"] == sum(cell.stage != "eval" for cell in plan.cells) and rows[str(a.root)]["tables"]


def test_compare_shows_config_keys_and_scores_that_differ(tmp_path):
    a, b = _two_runs(tmp_path)
    code, out = run_cli("compare", str(a.root), str(b.root), "--json")
    data = json.loads(out)
    assert code == 0 and [d["key"] for d in data["config"]] == ["stats.bootstrap"]
    scores = {(s["arm"], s["target"]): s for s in data["scores"]}
    assert scores[("en", "xnli")]["a"] == 61.0 and scores[("en", "xnli")]["b"] == 63.5  # hand-worked
    assert scores[("en", "xnli")]["b_minus_a"] == 2.5
    code, text = run_cli("compare", str(a.root), str(b.root))
    assert "stats.bootstrap" in text and "2.50" in text
