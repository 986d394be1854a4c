"""A researcher's bad day gets a message, not a traceback, and loses nothing: a run directory they cannot
write (as another user: root writes everywhere, so these run the CLI as `nobody`), a parent folder they
cannot write, and run-directory files cut short."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.grid.experiment import load_experiment
from hpcxlt.grid.plan import plan
from hpcxlt.launch.record import write_launch
from hpcxlt.store import RunStore
from tests.aggregate_fixture import make_run
from tests.launch_assets import run_cli
from tests.paths import CONFIGS, ROOT

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def shared_tmp():
    """A folder every user can reach (pytest's own tmp_path sits under a folder only root can enter)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("these tests switch to the user nobody: run them as root (CI does)")
    folder = Path(tempfile.mkdtemp(prefix="hpcxlt-nobody-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_nobody(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    home = tmp_path / "nobody-home"
    home.mkdir(exist_ok=True)
    os.chmod(home, 0o777)
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home), "HF_HOME": str(home / "hf")}
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "hpcxlt", *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def readonly_run(shared_tmp):
    """A finished-looking run directory owned by root, readable by everyone, writable by root only."""
    tmp_path = shared_tmp
    store = make_run(
        tmp_path / "run",
        arms=[{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda *_: 60.0,
    )
    for path in tmp_path.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return store


def test_aggregate_of_a_run_directory_you_cannot_write(readonly_run, shared_tmp):
    tmp_path = shared_tmp
    before = _snapshot(readonly_run.root)
    done = _as_nobody(tmp_path, "aggregate", str(readonly_run.root), "--no-plots")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "permission denied" in done.stderr and "tables" in done.stderr and "--out DIR" in done.stderr
    assert _snapshot(readonly_run.root) == before
    elsewhere = tmp_path / "tables"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o777)
    done = _as_nobody(tmp_path, "aggregate", str(readonly_run.root), "--no-plots", "--out", str(elsewhere))
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "tables.json").is_file()


def test_local_submit_into_a_run_directory_you_cannot_write(readonly_run, shared_tmp):
    tmp_path = shared_tmp
    before = _snapshot(readonly_run.root)
    done = _as_nobody(
        tmp_path,
        "submit",
        str(readonly_run.config_path),
        "--run-dir",
        str(readonly_run.root),
        "--local",
        "--no-progress",
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "permission denied" in done.stderr and "choose a --run-dir you can write" in done.stderr
    assert _snapshot(readonly_run.root) == before


def test_submit_under_a_parent_you_cannot_write(shared_tmp):
    tmp_path = shared_tmp
    parent = tmp_path / "theirs"
    parent.mkdir()
    os.chmod(parent, 0o755)
    done = _as_nobody(tmp_path, "submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(parent / "run"), "--local")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "permission denied" in done.stderr and str(parent) in done.stderr
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("name", ["plan.json", "launch.json"])
@pytest.mark.parametrize("command", ["status", "resume", "aggregate"])
def test_a_run_file_cut_short_is_named_with_how_to_restore_it(tmp_path, capsys, name, command):
    cfg = load_experiment(CONFIGS / "demo.yaml")
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    write_launch(store, "local")
    path = store.root / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    kept = path.read_bytes()
    argv = [command, str(store.root)] + (["--dry-run"] if command == "resume" else [])
    code, _ = run_cli(*argv)
    err = capsys.readouterr().err
    if command == "aggregate" and name == "launch.json":
        assert code in (0, 2) and "Traceback" not in err  # aggregate reads no launch record
        return
    assert code == 2 and f"{path} is not valid JSON" in err and "Traceback" not in err, err
    assert "hpcxlt submit DIR/config.yaml --run-dir DIR" in err
    assert path.read_bytes() == kept  # nothing overwritten
