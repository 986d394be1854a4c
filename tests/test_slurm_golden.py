"""`hpcxlt submit --dry-run` against recorded sbatch scripts for the example multi-node GPU site.

The recorded files live in tests/golden/; run paths and the interpreter are normalised to RUN_DIR and
PYTHON. After an intended change, regenerate them with HPCXLT_UPDATE_GOLDEN=1 and review the diff.
"""

import os
import sys

import pytest

from hpcxlt.cli import main
from tests.paths import CONFIGS, ROOT

GOLDEN = ROOT / "tests" / "golden"
SITE = ROOT / "slurm" / "sites" / "example-multinode-gpu.yaml"
# one script per kind: a root array, an aftercorr-aligned array, an eval array, the MPI aggregation
SCRIPTS = {
    "intermediate.0": "intermediate",
    "target.3": "target-aftercorr",
    "eval.4": "eval-aftercorr",
    "aggregate": "aggregate",
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("golden") / "run"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["submit", str(CONFIGS / "demo.yaml"), "--run-dir", str(run_dir), "--site", str(SITE), "--dry-run"])
    assert code == 0
    assert not run_dir.exists()  # a dry run writes nothing
    text = out.getvalue().replace(str(run_dir.resolve()), "RUN_DIR").replace(sys.executable, "PYTHON")
    text = text.replace(str(ROOT), "REPO")
    head, *sections = text.split("\n==> ")
    scripts = {}
    for section in sections:
        title, _, body = section.partition("\n")
        scripts[title.split(":")[0]] = body
    return head, scripts


def _compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HPCXLT_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: regenerate with HPCXLT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the recorded text (HPCXLT_UPDATE_GOLDEN=1 to accept)"


def test_array_table_matches_recording(dry_run):
    head, scripts = dry_run
    _compare("example-multinode-gpu.arrays.txt", head)
    assert len(scripts) == 16  # 15 arrays + the aggregation


@pytest.mark.parametrize("array,name", sorted(SCRIPTS.items()))
def test_sbatch_scripts_match_recording(dry_run, array, name):
    _, scripts = dry_run
    _compare(f"example-multinode-gpu.{name}.sbatch", scripts[array])


def test_scripts_carry_what_the_site_and_the_grid_need(dry_run):
    _, scripts = dry_run
    inter, target, agg = scripts["intermediate.0"], scripts["target.3"], scripts["aggregate"]
    # 2 nodes x 4 GPUs, one task per GPU, whole nodes, requeue on preemption, signal before the limit
    for flag in (
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--exclusive",
        "--requeue",
        "--signal=USR2@300",
        "--time=1440",
        "--array=0-5%6",
        "--hold",
        "--kill-on-invalid-dep=yes",
    ):
        assert f"#SBATCH {flag}\n" in inter, flag
    assert "#SBATCH --dependency=aftercorr:@intermediate.0\n" in target
    assert "srun --unbuffered" in target and "module load gcc/12.2 cuda/12.4 openmpi/4.1" in target
    # the aggregation: CPU partition, 8 MPI ranks started by the site's launcher, after every eval array
    assert "#SBATCH --partition=cpu\n" in agg and "#SBATCH --ntasks-per-node=8\n" in agg
    assert "srun --unbuffered" not in agg
    evals = ":".join(f"@eval.{i}" for i in range(8))
    assert f"#SBATCH --dependency=afterok:{evals}\n" in agg


def test_the_array_table_keeps_its_columns_apart_and_says_why_counts_differ_from_plan(tmp_path):
    """A long task label ('xcopa(siqa first)') never runs into the dependency column, and a first wave says
    it is one (its counts are smaller than `hpcxlt plan`'s)."""
    import re

    from tests.launch_assets import run_cli

    code, out = run_cli(
        "submit",
        str(CONFIGS / "phang2020.yaml"),
        "--run-dir",
        str(tmp_path / "run"),
        "--site",
        str(SITE),
        "-o",
        "data.source=local",
        "-o",
        f"data.root={tmp_path}",
        "--dry-run",
    )
    assert code == 0
    head = out.split("\n==> ")[0]
    rows = [line for line in head.splitlines() if "(siqa first)" in line]
    assert rows and all(re.search(r"\(siqa first\)\s{2,}\S", line) for line in rows)
    assert re.search(r"this is the first wave: \d+ more job\(s\) go in later waves \(site max_queued_jobs=500", head)
