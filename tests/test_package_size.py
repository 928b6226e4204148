"""No Python file of the repository runs past 400 lines: a file that grows past it gets split
along what it does (see the package's line counts per folder: `python
tests/test_package_size.py`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mtdiff"
FOLDERS = ("mtdiff", "benchmarks", "drills", "experiments", "pipelines", "sweeps", "tests")
MAX_LINES = 400


def line_counts(package: Path = PACKAGE) -> dict[str, int]:
    return {str(p.relative_to(package.parent)): len(p.read_text().splitlines())
            for p in sorted(package.rglob("*.py"))}


def test_no_file_is_over_400_lines():
    counts = {f: n for folder in FOLDERS for f, n in line_counts(REPO / folder).items()}
    assert len(counts) > 200
    assert {f: n for f, n in counts.items() if n > MAX_LINES} == {}


if __name__ == "__main__":
    per_folder: Counter[str] = Counter()
    for f, n in line_counts().items():
        per_folder[str(Path(f).parent)] += n
    for folder, n in sorted(per_folder.items()):
        print(f"{n:6d}  {folder}")
    print(f"{sum(per_folder.values()):6d}  total")
