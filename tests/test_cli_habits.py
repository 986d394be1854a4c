"""The shell habits: `hpcxlt --version`, and completion scripts that bash itself runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.paths import ROOT


def _hpcxlt(*argv: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "hpcxlt", *argv], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    ).stdout


def test_version_names_the_release_and_the_commit():
    out = _hpcxlt("--version")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    assert out.startswith("hpcxlt 0.1.0") and commit.strip() in out


def _complete(script: str, *words: str) -> list[str]:
    """What bash's programmable completion offers for `words` (the last one being completed)."""
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _hpcxlt_complete; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    return subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_parse(shell):
    script = _hpcxlt("completion", shell)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "_hpcxlt_complete" in script and ("bashcompinit" in script) == (shell == "zsh")


def test_bash_completes_commands_options_and_files():
    script = _hpcxlt("completion", "bash")
    assert sorted(_complete(script, "hpcxlt", "s")) == ["score", "status", "submit", "synth"]
    assert {"--dry-run", "--site", "--run-dir", "--reuse-from"} <= set(_complete(script, "hpcxlt", "submit", "--"))
    assert _complete(script, "hpcxlt", "plan", "--pi") == ["--pilot"]
    assert "configs/demo.yaml" in _complete(script, "hpcxlt", "plan", "configs/de")
