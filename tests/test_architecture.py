"""The architecture you can see: one import direction, heavy libraries in the one module that needs them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpcxlt"

# Lower number = lower layer. A module may import its own layer or lower ones, never higher ones.
LAYERS = {
    "io": 0,
    "launcher_env": 0,
    "config": 1,
    "tasks": 2,
    "grid": 2,
    "store": 3,
    "data": 4,
    "model": 4,
    "demo": 4,
    "train": 5,
    "evaluate": 5,
    "aggregate": 5,
    "launch": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 0,
}
# Heavy library -> the only modules allowed to import it.
ONLY_IN = {
    "submitit": {"launch/slurm/submission.py", "launch/execute/slurm_tasks.py", "launch/slurm/shared_array.py"},
    "mpi4py": {"aggregate/mpi_world.py"},
    "deepspeed": {"train/engine.py"},
}
# Nothing below the data layer may import these at all (so `hpcxlt plan` stays light).
LIGHT_LAYERS_FORBID = {"torch", "transformers", "datasets", "deepspeed", "submitit", "mpi4py", "pandas", "matplotlib"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel.as_posix(), rel.parts[0].removesuffix(".py"), ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


MODULES = list(_modules())


@pytest.mark.parametrize(("rel", "top", "tree"), MODULES, ids=[m[0] for m in MODULES])
def test_imports_point_down(rel, top, tree):
    mine = LAYERS[top]
    for name in _imports(tree):
        parts = name.split(".")
        if parts[0] == "hpcxlt" and len(parts) > 1:
            theirs = LAYERS[parts[1]]
            assert theirs <= mine, f"hpcxlt/{rel} (layer {top}) imports {name} from a higher layer"
        root = parts[0]
        if root in ONLY_IN:
            assert rel in ONLY_IN[root], f"hpcxlt/{rel} imports {root}; only {sorted(ONLY_IN[root])} may"
        if mine <= LAYERS["store"]:
            assert root not in LIGHT_LAYERS_FORBID, f"hpcxlt/{rel} is in a light layer but imports {root}"


@pytest.mark.parametrize(("rel", "top", "tree"), MODULES, ids=[m[0] for m in MODULES])
def test_nothing_a_real_run_uses_imports_the_demo_world(rel, top, tree):
    """The synthetic benchmark and the tiny model are demo/test material: only `hpcxlt.demo` itself and
    the commands that build them (`hpcxlt synth`, `hpcxlt build-tiny`) may import them."""
    if top == "demo" or rel in ("cli/synth.py", "cli/build_tiny.py"):
        return
    for name in _imports(tree):
        assert not name.startswith("hpcxlt.demo"), (
            f"hpcxlt/{rel} imports {name}: real runs must not depend on the demo world"
        )


def _module_name(rel: str) -> str:
    return "hpcxlt." + rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")


def _import_graph() -> dict[str, set[str]]:
    """hpcxlt module -> the hpcxlt modules it imports, at module level or inside a function alike."""
    names = {_module_name(rel) for rel, _, _ in MODULES}
    graph: dict[str, set[str]] = {}
    for rel, _, tree in MODULES:
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != _module_name(rel):
                    edges.add(target)
        graph[_module_name(rel)] = edges
    return graph


def test_no_import_cycles():
    """No module reaches itself through imports, counting the ones inside functions (a lazy import can hide
    a cycle, not remove it)."""
    graph = _import_graph()
    cycles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"
