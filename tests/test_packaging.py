"""hpcxlt as the ecosystem installs it: `python -m build` makes a wheel that installs into a fresh virtual
environment and runs `hpcxlt plan` there, and the wheel declares every library the code imports."""

from __future__ import annotations

import ast
import email
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.paths import CONFIGS, ROOT

# what `hpcxlt plan` needs (the login-node path imports nothing else), at requirements.txt's pins
PLAN_NEEDS = ("PyYAML==6.0.4", "numpy==2.4.6")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from the committed files' copy (the working tree gets no build/ or egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        path = ROOT / name.decode()
        if path.is_file():
            target = source / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (found,) = (tmp / "dist").glob("hpcxlt-*.whl")
    return found


def test_the_wheel_installs_into_a_fresh_venv_and_plans(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    subprocess.run([*pip, *PLAN_NEEDS], check=True, timeout=600)
    done = subprocess.run(
        [str(venv / "bin" / "hpcxlt"), "plan", str(CONFIGS / "demo.yaml"), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"experiment": "demo"' in done.stdout


def _third_party_imports() -> set[str]:
    """Top-level modules hpcxlt imports that are neither its own nor the standard library."""
    names = set()
    for path in (ROOT / "hpcxlt").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for n in ast.walk(block)
        }  # imports for the type checker never run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n != "hpcxlt" and n != "__future__" and n not in sys.stdlib_module_names}


def test_the_wheel_declares_every_library_the_code_imports(wheel):
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = email.message_from_string(archive.read(meta).decode()).get_all("Requires-Dist") or []
    declared = {
        r.split(";")[0].split("[")[0].strip().split(" ")[0].rstrip("<>=!~,0123456789.").lower().replace("_", "-")
        for r in requires
    }
    distributions = packages_distributions()  # module -> the installed distributions that provide it
    missing = {}
    for module in sorted(_third_party_imports()):
        provided_by = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        assert provided_by, f"hpcxlt imports {module}, which no installed distribution provides"
        if not provided_by & declared:
            missing[module] = sorted(provided_by)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
