"""hpcxlt: intermediate-task training sweeps on XTREME-R for Slurm clusters."""

import subprocess
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed
from pathlib import Path

__version__ = "0.1.0"


def version() -> str:
    """The installed version, and the git commit of a checkout (what a report's provenance names)."""

    try:
        number = installed("hpcxlt")
    except PackageNotFoundError:
        number = __version__
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{number} (git {commit})" if commit and (root / ".git").exists() else number
