"""The locks: exact versions for reproducible installs, one file per Python minor version
(constraints.txt for 3.11, constraints-py312.txt for 3.12), written by .ci/lock from
pyproject.toml, used by CI (.ci/run) and the cluster (cluster.yaml), offered in the
README."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {(3, 11): ROOT / "constraints.txt", (3, 12): ROOT / "constraints-py312.txt"}
# PyPI's Linux torch is its CUDA 13 build, and these are its CUDA libraries: the CPU build
# needs none and the cu128 build pins its own, so the locks leave them out.
TORCH_CUDA_STACK = re.compile(r"(?!nvidia-ml-py$)(nvidia-.*|cuda-.*|triton)")


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;@]*)", line)
        assert m, f"{lock.name}: not an exact pin: {line!r}"  # no ranges, URLs, paths, markers
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{lock.name}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    """pyproject.toml's dependencies plus those of the named extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    return [Requirement(r) for r in
            [*project["dependencies"], *(r for e in extras for r in optional[e])]]


def _all_extras() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                ["optional-dependencies"])


@pytest.fixture(params=sorted(LOCKS), ids=lambda v: f"py{v[0]}{v[1]}")
def lock(request: pytest.FixtureRequest) -> Path:
    return LOCKS[request.param]


def test_every_dependency_and_extra_is_pinned_within_pyproject_ranges(lock: Path) -> None:
    pins = _pins(lock)
    assert "mtdiff" not in pins
    assert set(_all_extras()) >= {"test", "gpu"}
    for req in _requirements(*_all_extras()):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in {lock.name}: run bash .ci/lock"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"{lock.name} pins {name}=={pins[name]}, outside pyproject's {req}")
    assert not any("+" in v for v in pins.values())  # local builds (+cpu) are not on PyPI
    stack = sorted(n for n in pins if TORCH_CUDA_STACK.fullmatch(n))
    assert not stack, f"{lock.name} pins torch's CUDA libraries: {stack}"


def test_each_lock_says_its_python_and_how_it_was_made(lock: Path) -> None:
    version = next(v for v, path in LOCKS.items() if path == lock)
    header = re.match(r"(#.*\n)*", lock.read_text()).group(0)
    assert header.startswith(f"# Lock for Python {version[0]}.{version[1]} on Linux x86-64")
    assert "bash .ci/lock" in header
    assert f"pip install -c {lock.name} -e " in header


def test_py312_lock_has_the_py311_versions() -> None:
    """.ci/lock resolves 3.12 preferring 3.11's versions: a difference means a version
    without a 3.12 wheel (say which in the locks' header and here) or a stale file."""
    py311, py312 = _pins(LOCKS[3, 11]), _pins(LOCKS[3, 12])
    assert set(py311) == set(py312), sorted(set(py311) ^ set(py312))
    differ = {n: (py311[n], py312[n]) for n in py311 if py311[n] != py312[n]}
    assert not differ, f"3.11 vs 3.12 versions: {differ}"


def _installed_closure(requirements: list[Requirement]) -> dict[str, str]:
    """Name -> installed version (public part: 2.13.0+cpu -> 2.13.0) of every distribution
    that the requirements reach through the installed metadata, extras and environment
    markers applied."""
    found: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate()]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        for key in [(name, ""), *((name, canonicalize_name(e)) for e in req.extras)]:
            if key in seen:
                continue
            seen.add(key)
            try:
                dist = md.distribution(name)
            except md.PackageNotFoundError:
                pytest.fail(f"{name} (required by the project) is not installed")
            found[name] = Version(dist.version).public
            for text in dist.requires or []:
                sub = Requirement(text)
                if sub.marker is None or sub.marker.evaluate({"extra": key[1]}):
                    todo.append(sub)
    return found


def test_the_environment_here_is_the_lock_for_its_python() -> None:
    """The tests run in the environment the lock describes: every package that the
    project and its test extra reach is pinned at the installed version (a mismatch means
    a stale lock, or a venv not installed with `-c`: see the lock's header)."""
    lock = LOCKS.get(sys.version_info[:2])
    if lock is None:
        pytest.skip(f"no lock for Python {sys.version_info[0]}.{sys.version_info[1]}")
    if os.environ.get("MTDIFF_INSTALLED_FROM_LOCK") != lock.name:
        # The README's test command installs the newest versions pyproject.toml allows,
        # which move every week; only a venv installed with `-c <lock>` (.ci/run says so)
        # is held to the lock.
        pytest.skip(f"this venv was not installed from {lock.name} (.ci/run sets "
                    "MTDIFF_INSTALLED_FROM_LOCK when it is)")
    pins = _pins(lock)
    installed = _installed_closure(_requirements("test"))
    assert "torch" in installed and "pytest" in installed
    for name, version in sorted(installed.items()):
        if TORCH_CUDA_STACK.fullmatch(name):
            continue  # a CUDA torch build's own libraries
        assert name in pins, f"{name}=={version} is installed but not in {lock.name}"
        assert version == pins[name], f"{name}: installed {version}, {lock.name} {pins[name]}"


def _run_ci(tmp_path: Path, python_version: str | None) -> subprocess.CompletedProcess[str]:
    """.ci/run in an empty copy of the repository, with a python3 that answers the version
    question (as `python_version`, or as the interpreter running the tests) and stops the
    script at `python3 -m venv` with exit 97, so nothing gets installed."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci/run", repo / ".ci/run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = (f'echo "{python_version}"; exit 0' if python_version
              else f'exec "{sys.executable}" "$@"')
    fake = bin_dir / "python3"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then {answer}; fi\n'
                    'echo "python3 $*" >&2\nexit 97\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(repo / ".ci/run")], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize(("python_version", "lock_name"),
                         [(None, None), ("3.11", "constraints.txt"),
                          ("3.12", "constraints-py312.txt")])
def test_ci_picks_the_lock_for_its_python(tmp_path: Path, python_version: str | None,
                                           lock_name: str | None) -> None:
    shown = python_version
    if python_version is None:  # the real question, asked of the Python running this
        shown = "{}.{}".format(*sys.version_info[:2])
        if sys.version_info[:2] not in LOCKS:
            pytest.skip(f"no lock for Python {shown}")
        lock_name = LOCKS[sys.version_info[:2]].name
    result = _run_ci(tmp_path, python_version)
    assert result.returncode == 97, result.stderr
    assert result.stdout.splitlines() == [f"CI: Python {shown}, {lock_name}"]
    assert result.stderr.splitlines() == ["python3 -m venv .venv"]


def test_ci_without_a_lock_for_its_python_fails_with_one_line(tmp_path: Path) -> None:
    result = _run_ci(tmp_path, "3.13")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("CI: no lock for Python 3.13 ")
    assert "constraints.txt" in line and "constraints-py312.txt" in line


def test_ci_and_readme_use_the_locks() -> None:
    ci = (ROOT / ".ci/run").read_text()
    assert 'pip install --quiet -c "$lock" -e ".[test]"' in ci
    assert 'MTDIFF_INSTALLED_FROM_LOCK="$lock" python -m pytest' in ci
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -c constraints.txt -e ".[test]"' in readme
    # the two quick-start commands stay as simple as they were
    assert 'pip install -e . && python pipelines/full_repro.py' in readme
    assert 'pip install -e ".[test]" && python -m pytest' in readme
