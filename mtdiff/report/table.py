"""A small table type that renders to Markdown and CSV from the same cells.

Cells are text, numbers, `Stat` (mean ± std, with a 95% CI for ours: "m ± s [lo, hi]"),
`MISSING` ("–": ours not run, or a cell the paper leaves empty), `NOT_RUN` or
`NOT_LEGIBLE` (a paper cell our copy lost). In CSV a column holding `Stat`s becomes
``<col>_mean`` and ``<col>_std`` (and ``<col>_ci_low``, ``<col>_ci_high`` for a column
with CIs), so it loads as numbers.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mtdiff.data.io import atomic_write_text


class _Marker(str):
    """A named placeholder cell (a str, so it sorts and prints)."""


MISSING: Final = _Marker("–")
NOT_LEGIBLE: Final = _Marker("not legible")
NOT_RUN: Final = _Marker("not run")


@dataclass(frozen=True)
class Stat:
    """mean ± std [CI low, CI high], printed with `fmt`; `n` is how many values it
    summarises. No std (one value): the mean alone; no CI: no brackets."""

    mean: float
    std: float | None
    fmt: str = ".2f"
    n: int | None = None
    suffix: str = ""  # Markdown only, e.g. " (↑ 12%)"
    ci: tuple[float, float] | None = None

    def __str__(self) -> str:
        text = f"{self.mean:{self.fmt}}"
        if self.std is not None:
            text += f" ± {self.std:{self.fmt}}"
        if self.ci is not None:
            text += f" [{self.ci[0]:{self.fmt}}, {self.ci[1]:{self.fmt}}]"
        return text + self.suffix


Value = str | int | float | Stat | None


@dataclass
class Table:
    """Columns, rows and the context a reader needs (shown above and below it).

    Markdown shows `meta` above the rows and `notes` below; CSV holds the rows only, plus
    a `preset` column when `preset` is set.
    """

    name: str  # file stem, e.g. "table1"
    title: str
    columns: list[str]
    rows: list[list[Value]]
    meta: dict[str, str] = field(default_factory=dict)  # context lines above the table
    preset: str | None = None  # the preset our numbers came from: a CSV column when set
    notes: list[str] = field(default_factory=list)  # below the table
    # Columns split into _mean/_std in CSV even when no row holds a Stat (a stable schema);
    # a column holding any Stat is split anyway. `ci_columns` add _ci_low/_ci_high.
    stat_columns: tuple[str, ...] = ()
    ci_columns: tuple[str, ...] = ()

    def markdown(self) -> str:
        """The table as GitHub Markdown, with its context lines."""
        lines = [f"**{self.title}**", ""]
        lines += [f"- {k}: {v}" for k, v in self.meta.items()]
        if self.meta:
            lines.append("")
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(_md(v) for v in row) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def csv_text(self) -> str:
        """The table as CSV: snake_case headers, Stat columns split into _mean and _std."""
        ci_cols = {i for i, c in enumerate(self.columns) if c in self.ci_columns
                   or any(isinstance(r[i], Stat) and r[i].ci is not None for r in self.rows)}
        stat_cols = ci_cols | {i for i, c in enumerate(self.columns) if c in self.stat_columns
                               or any(isinstance(r[i], Stat) for r in self.rows)}
        header: list[str] = []
        for i, c in enumerate(self.columns):
            key = _slug(c)
            header += [f"{key}_mean", f"{key}_std"] if i in stat_cols else [key]
            header += [f"{key}_ci_low", f"{key}_ci_high"] if i in ci_cols else []
        if self.preset is not None:
            header.append("preset")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for row in self.rows:
            out: list[object] = []
            for i, v in enumerate(row):
                if i in stat_cols:
                    out += _csv_stat(v, with_ci=i in ci_cols)
                else:
                    out.append(_csv(v))
            w.writerow(out + ([self.preset] if self.preset is not None else []))
        return buf.getvalue()

    def write_csv(self, directory: str | Path) -> Path:
        """Write `<directory>/<name>.csv` atomically; returns its path."""
        return atomic_write_text(Path(directory) / f"{self.name}.csv", self.csv_text())


def _md(v: Value) -> str:
    if v is None:
        return MISSING
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _csv(v: Value) -> object:
    if v is None or v is MISSING or v is NOT_RUN:
        return ""
    if isinstance(v, Stat):
        return str(v)
    return v


def _num(x: float | None) -> object:
    return "" if x is None else round(x, 6)


def _csv_stat(v: Value, with_ci: bool) -> list[object]:
    if isinstance(v, Stat):
        ci = [_num(v.ci[0]), _num(v.ci[1])] if v.ci is not None else ["", ""]
        return [_num(v.mean), _num(v.std)] + (ci if with_ci else [])
    if v is NOT_LEGIBLE:
        return [NOT_LEGIBLE] * (4 if with_ci else 2)
    return [_csv(v)] + [""] * (3 if with_ci else 1)


def _slug(text: str) -> str:
    """"Near-optimal (paper)" -> "near_optimal_paper"."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
