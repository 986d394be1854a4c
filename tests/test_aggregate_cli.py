"""`hpcxlt aggregate`: help, terminal output, --json, and user errors exiting 2."""

from __future__ import annotations

import json

import pytest

from hpcxlt.cli import main
from tests.aggregate_fixture import make_run

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]


@pytest.fixture
def run(tmp_path):
    return make_run(
        tmp_path / "run",
        arms=ARMS,
        targets={"xnli": ["en", "sw"]},
        seeds=[1, 2],
        score=lambda arm, t, seed, lang, split: 70.0 + (arm == "en") + seed,
    )


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["aggregate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--json", "--partial", "--split", "--plot-arm", "--out"):
        assert option in out


def test_terminal_output_has_the_tables_and_the_files(run, capsys):
    assert main(["aggregate", str(run.root), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "8 records from 8 files (1 rank)" in out
    assert "Task scores per arm" in out and "72.50 ± 0.71 (2)" in out  # 'en': seeds 72, 73
    assert str(run.tables_dir / "tables.json") in out


def test_json_is_one_object(run, capsys):
    assert main(["aggregate", str(run.root), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["split"] == "test" and set(data["tables"]) == {
        "task_scores",
        "languages",
        "deltas",
        "significance",
        "xtreme_r",
        "resource",
        "significance_resource",
        "best_arm",
        "significance_languages",
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "dev"], "evaluates only test"),
        (["--plot-arm", "nope"], "'nope' is not an arm"),
    ],
)
def test_user_errors_exit_2_with_one_line(run, capsys, args, message):
    assert main(["aggregate", str(run.root), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path / "none")]) == 2
    assert "no such run directory" in capsys.readouterr().err
