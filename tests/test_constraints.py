"""constraints.txt: exact versions for reproducible installs, consistent with pyproject.toml,
used by CI and offered in the README (issue 14, item 11)."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;@]*)", line)
        assert m, f"not an exact pin: {line!r}"  # no ranges, URLs, paths or editables
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in
            [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_every_direct_dependency_is_pinned_within_pyproject_ranges():
    pins = _pins()
    assert "mtdiff" not in pins
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req}")
    assert not any("+" in v for v in pins.values())  # local builds (+cpu) are not on PyPI


def test_pins_are_the_versions_installed_here():
    """The environment the tests run in is the one the file describes (a mismatch means
    the file is stale: regenerate it as its header says)."""
    pins = _pins()
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        installed = Version(md.version(req.name)).public  # 2.13.0+cpu -> 2.13.0
        assert installed == pins[name], f"{name}: installed {installed}, pinned {pins[name]}"


def test_ci_and_readme_use_the_constraints():
    assert 'pip install --quiet -c constraints.txt -e ".[test]"' in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -c constraints.txt -e ".[test]"' in readme
    # the two quick-start commands stay as simple as they were
    assert 'pip install -e . && python pipelines/full_repro.py' in readme
    assert 'pip install -e ".[test]" && python -m pytest' in readme
