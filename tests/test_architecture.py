"""The package structure holds: no import cycles, and dependencies go one way.

Every `import` of `jobs`/`udfs` modules counts, also those inside functions and under
`TYPE_CHECKING` (a lazy import is still a dependency). `jobs.core` (shared
infrastructure) imports no capability; `udfs` (executor code) imports nothing from `jobs`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "udfs")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from a import b` counts a.b when b is a
    module, else a)."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.split(".")[0] in PACKAGES:
                    found = owner(target)
                    if found and found != module:
                        graph[module].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_a_planted_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_dependencies_go_one_way() -> None:
    wrong = sorted(
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if (module.startswith("jobs.core") and not target.startswith("jobs.core"))
        or (module.startswith("udfs") and target.startswith("jobs"))
    )
    assert wrong == []


#: "No module over about 400 lines": a module that grows past this is split by concern.
MAX_LINES = 420


def test_modules_are_small_and_say_what_they_own() -> None:
    too_long = {}
    undocumented = []
    for module, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_LINES:
            too_long[module] = len(text.splitlines())
        if not ast.get_docstring(ast.parse(text)):
            undocumented.append(module)
    assert too_long == {}
    assert undocumented == []


def test_no_function_calls_a_module_function_it_shadows() -> None:
    """A function that assigns a name it also calls as the module's function fails at run
    time (UnboundLocalError, or NameError in a comprehension): refactors that move and
    rename functions make this easy to miss."""
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                own |= {a.asname or a.name for a in node.names}
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            stored = {
                n.id
                for n in ast.walk(function)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
            called = {
                n.func.id
                for n in ast.walk(function)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }
            found += [f"{module}.{function.name}: {name}" for name in stored & called & own]
    assert found == []
