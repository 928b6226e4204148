"""Only `mtdiff.layout` spells the file and folder names that one stage writes and another
reads (an evaluation's file, a TD3-BC result, a distilled student's folder): a string
literal (f-string parts included) of the package that starts with one of them elsewhere
fails here."""

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
                    and id(node) not in docstrings and node.value.startswith(NAMES)):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno}: {node.value!r}")
    return found


def test_file_names_are_spelled_in_the_layout_only():
    assert spelled_outside_layout() == []


def test_a_name_spelled_elsewhere_is_found(tmp_path):
    (tmp_path / "layout.py").write_text('X = "eval-x.json"\n')
    (tmp_path / "stage.py").write_text('"""Writes eval-<suite>.json."""\n'
                                       'def f(s):\n    return f"student-{s}"\n')
    assert spelled_outside_layout(tmp_path) == [f"{tmp_path.name}/stage.py:3: 'student-'"]
