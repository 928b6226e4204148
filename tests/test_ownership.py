"""Who owns what. Only `mtdiff.layout` spells the file and folder names that one stage writes
and another reads (an evaluation's file, a TD3-BC result, a distilled student's folder): a
string literal (f-string parts included) of the package that holds one of them elsewhere
fails here. Only `mtdiff.artifacts.Checkpoint` looks checkpoints up and reads them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtdiff"
OWNER = PACKAGE / "layout.py"
# (A dataset's own files, manifest and prompts, are its format's: `mtdiff.data.writer`.)
NAMES = ("eval-", "reference-", "result.json", "student-", "distill-")


def spelled_outside_layout(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package) == OWNER.relative_to(PACKAGE):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                        ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and any(n in node.value for n in NAMES)):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno}: {node.value!r}")
    return found


def test_file_names_are_spelled_in_the_layout_only():
    assert spelled_outside_layout() == []


def test_a_name_spelled_elsewhere_is_found(tmp_path):
    (tmp_path / "layout.py").write_text('X = "eval-x.json"\n')
    (tmp_path / "stage.py").write_text('"""Writes eval-<suite>.json."""\n'
                                       'def f(s):\n    return f"student-{s}"\n')
    assert spelled_outside_layout(tmp_path) == [f"{tmp_path.name}/stage.py:3: 'student-'"]


def test_checkpoints_are_looked_up_and_read_through_the_artifact_only():
    """`mtdiff.artifacts.Checkpoint` finds and reads checkpoints (once per file), through
    the reading helpers beside it; training (`train/checkpoints.py`) only writes them."""
    owners = {PACKAGE / "artifacts.py"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in owners:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = (node.id if isinstance(node, ast.Name) else node.attr
                    if isinstance(node, ast.Attribute) else node.name
                    if isinstance(node, ast.alias) else None)
            if name in ("load_checkpoint", "find_checkpoint", "latest_checkpoint"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    assert found == []
