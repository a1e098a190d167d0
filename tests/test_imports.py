"""The package's import graph: no circles (imports inside functions included), a core that never imports a
wing, and a torch-free ``groupconv.spec`` and ``groupconv.numpy``."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "groupconv"
CORE = ("spec", "errors", "layouts", "precision", "tables", "formulations", "timing", "memory", "machine", "tuning",
        "dispatch", "ops", "autograd", "routing", "functional", "nn", "numpy")  # fmt: skip
WINGS = ("reports", "training", "models", "parallel", "bench", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            origin = ".".join(filter(None, [base, node.module or ""]))
            submodules = {f"{origin}.{alias.name}" for alias in node.names} & MODULES.keys()
            # `from . import ops` imports the module ops (its package is the importer's own, already loading)
            found |= submodules if len(submodules) == len(node.names) else {origin, *submodules}
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def test_the_graph_resolves_relative_imports():
    assert {"groupconv.dispatch", "groupconv.tuning", "groupconv.autograd"} <= GRAPH["groupconv.routing"]
    assert "groupconv.spec" in GRAPH["groupconv.formulations.im2col"]


def circles() -> list[list[str]]:
    """Every strongly connected component of more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in GRAPH[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_circle():
    assert circles() == []


def test_the_circle_finder_finds_one(monkeypatch):
    monkeypatch.setitem(GRAPH, "groupconv.spec", GRAPH["groupconv.spec"] | {"groupconv.nn"})
    assert any({"groupconv.spec", "groupconv.nn"} <= set(circle) for circle in circles())


def layer(module: str) -> str:
    """ "core", "wing" or "top" (the package itself and ``__main__``) for a module name."""
    first = module.split(".")[1] if "." in module else ""
    return "core" if first in CORE else "wing" if first in WINGS else "top"


def test_every_module_is_core_or_a_wing():
    assert {name for name in MODULES if layer(name) == "top"} == {"groupconv", "groupconv.__main__"}


def test_the_core_never_imports_a_wing():
    crossings = {
        name: sorted(m for m in GRAPH[name] if layer(m) == "wing") for name in MODULES if layer(name) == "core"
    }
    assert {name: wings for name, wings in crossings.items() if wings} == {}


def test_spec_and_numpy_import_without_torch():
    code = "import sys, groupconv.spec, groupconv.numpy; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
