"""The package's import graph has no loop: every `import mtdiff...` statement counts, at
module top, inside functions or under TYPE_CHECKING (a loop hidden in a function body still
ties the modules together and hides the route from a reader).

    python -m pytest tests/test_imports.py      # or: python tests/test_imports.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtdiff"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package that is a
    submodule counts as that submodule)."""
    mods = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in targets:
                target = module_of(name) if name.startswith(package.name) else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def closure(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    """`roots` and every module of the package they import, directly or not."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(graph[mod])
    return seen


def test_the_package_has_no_import_loop():
    graph = import_graph()
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the walk saw the package
    assert cycles(graph) == []


def test_the_artifacts_import_only_config_and_layout():
    """Every stage returns a `mtdiff.artifacts` type, so anything may import it: it imports
    only what `mtdiff.config` and `mtdiff.layout` already bring (`mtdiff.methods`, the method
    registry config's sections are filled from, is one of them); no stage, no training."""
    graph = import_graph()
    allowed = closure(graph, ["mtdiff.config", "mtdiff.layout"])
    assert "mtdiff.artifacts" not in allowed and "mtdiff.methods" in allowed
    assert sorted(graph["mtdiff.artifacts"] - allowed) == []

def test_a_loop_is_found_wherever_its_import_sits(tmp_path):
    pkg = tmp_path / "mtdiff"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from mtdiff.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    import mtdiff.a\ndef g(): ...\n")
    (pkg / "d.py").write_text("import mtdiff.a\n")  # imports into the loop, not part of it
    graph = import_graph(pkg)
    assert graph["mtdiff.a"] == {"mtdiff.sub.b"} and graph["mtdiff.sub.b"] == {"mtdiff.c"}
    assert cycles(graph) == [["mtdiff.a", "mtdiff.c", "mtdiff.sub.b"]]


if __name__ == "__main__":
    loops = cycles(import_graph())
    print("\n".join(" <-> ".join(c) for c in loops) or "no import loop")
    sys.exit(1 if loops else 0)
