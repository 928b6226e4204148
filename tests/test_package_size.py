"""No module of the package runs past 400 lines: a file that grows past it gets split along
what it does (see the line counts per folder: `python tests/test_package_size.py`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtdiff"
MAX_LINES = 400


def line_counts(package: Path = PACKAGE) -> dict[str, int]:
    return {str(p.relative_to(package.parent)): len(p.read_text().splitlines())
            for p in sorted(package.rglob("*.py"))}


def test_no_module_is_over_400_lines():
    counts = line_counts()
    assert len(counts) > 100
    assert {f: n for f, n in counts.items() if n > MAX_LINES} == {}


if __name__ == "__main__":
    per_folder: Counter[str] = Counter()
    for f, n in line_counts().items():
        per_folder[str(Path(f).parent)] += n
    for folder, n in sorted(per_folder.items()):
        print(f"{n:6d}  {folder}")
    print(f"{sum(per_folder.values()):6d}  total")
