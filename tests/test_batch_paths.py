"""A run directory's path reaches the sbatch script as one literal argument, whatever it holds, or is refused.

The oracle is bash itself: every dry-run script must parse (`bash -n`), and the EXIT trap, run by bash,
must hand the real `hpcxlt.launch.heal` (`hpcxlt.launch.slurm.exit_trap`) the path unchanged and run nothing else. The same path runs a
whole grid on the real cluster in tests/test_slurm_grid.py.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from hpcxlt.launch.slurm.exit_trap import trap_lines
from hpcxlt.launch.slurm.submission import batch_path_problem
from tests.launch_assets import run_cli
from tests.paths import CONFIGS, ROOT

SITE = ROOT / "slurm" / "sites" / "example-multinode-gpu.yaml"
# command substitution, both quotes, a space, a glob and a backtick: each breaks an unquoted script
HOSTILE = 'r $(touch $HPCXLT_PWNED_MARK) it\'s "q" *`touch $HPCXLT_PWNED_MARK`'


def _dry_run_scripts(run_dir) -> dict[str, str]:
    code, out = run_cli(
        "submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(run_dir), "--site", str(SITE), "--dry-run"
    )
    assert code == 0, out
    sections = [s.split("\n", 1) for s in out.split("\n==> ")[1:]]
    return {title.split(":")[0]: body for title, body in sections}


def test_every_dry_run_script_parses_and_names_the_path_literally(tmp_path):
    run_dir = tmp_path / HOSTILE
    scripts = _dry_run_scripts(run_dir)
    assert len(scripts) == 16 and not run_dir.exists()
    for name, text in scripts.items():
        check = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        assert check.returncode == 0, f"{name}: {check.stderr}"


def test_the_exit_trap_runs_heal_with_the_literal_path_and_nothing_else(tmp_path):
    mark = tmp_path / "pwned"
    run_dir = tmp_path / HOSTILE
    # the real heal entry point, told where it is: it says the folder is no run of its (no plan.json there)
    script = "\n".join(["set -u", *trap_lines(str(run_dir), 2, 120), "exit 137"]) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(HPCXLT_PWNED_MARK=str(mark), SLURM_JOB_ID="77")
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, text=True, capture_output=True)
    assert ran.returncode == 137, ran.stderr  # the trap keeps the job's status
    assert "hpcxlt heal: nothing to heal (not a job of this run)" in ran.stdout, ran.stdout + ran.stderr
    assert not mark.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_heal_receives_exactly_the_path(tmp_path, monkeypatch):
    run_dir = tmp_path / HOSTILE
    seen = tmp_path.parent / f"{tmp_path.name}-argv"
    # a stand-in interpreter that records its arguments, one per line (the path has no newline)
    fake = tmp_path.parent / f"{tmp_path.name}-python"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > "{seen}"\n')
    fake.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(fake))
    script = "\n".join([*trap_lines(str(run_dir), 3, 60), "exit 9"]) + "\n"
    subprocess.run(["bash", "-c", script], cwd=tmp_path, env={**os.environ, "HPCXLT_PWNED_MARK": str(tmp_path / "m")})
    assert seen.read_text().split("\n")[:-1] == ["-m", "hpcxlt.launch.heal", str(run_dir), "9", "3", "60"]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "name,what", [("a\nb", "control character"), ("a\tb", "control character"), ("run%j", "'%'"), ("run\\x", "'\\\\'")]
)
def test_paths_that_cannot_stand_in_a_batch_script_are_refused_before_anything_is_written(tmp_path, capsys, name, what):
    run_dir = tmp_path / name
    assert what in batch_path_problem(run_dir)
    code, _ = run_cli("submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(run_dir), "--site", str(SITE))
    err = capsys.readouterr().err
    assert code == 2 and what in err and "choose a path without it" in err
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_ordinary_punctuation_is_allowed():
    for name in ("/scratch/a b/it's", "/w/$(x)", "/w/a;b&c|d", "/w/ünï cødé", "/w/#1"):
        assert batch_path_problem(name) is None
