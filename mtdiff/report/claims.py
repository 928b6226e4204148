"""Resolved differences: which orderings the paper reports hold in our numbers.

For a pair of cells A, B whose order the paper states (by its numbers, or in its text),
the CI of A - B (`stats.difference`) decides: "holds" when it lies above 0, "reversed"
when below, "not resolved" when it contains 0 (or when no CI can be formed). Nothing is
claimed from means alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtdiff.report.stats import CellStats, DiffStats, difference

_METHOD = {"t": "t", "welch": "Welch's t", "bootstrap": "bootstrap"}


@dataclass(frozen=True)
class Claim:
    """The paper's "A > B" on `column` of `table`, and what our numbers say."""

    table: str
    column: str  # e.g. "near-optimal", "unseen maps"
    a: str  # labels
    b: str
    paper: str  # the paper's evidence: "59.53 vs 45.68" or a quote
    diff: DiffStats | None

    @property
    def verdict(self) -> str:
        """"holds", "reversed" or "not resolved"."""
        if self.diff is None or not self.diff.resolved:
            return "not resolved"
        return "holds" if self.diff.sign > 0 else "reversed"

    def as_dict(self) -> dict[str, object]:
        """Its entry in results.json."""
        d = self.diff
        return {"table": self.table, "column": self.column, "a": self.a, "b": self.b,
                "paper": self.paper, "verdict": self.verdict,
                "diff_mean": None if d is None else round(d.mean, 6),
                "ci_low": None if d is None else round(d.ci_low, 6),
                "ci_high": None if d is None else round(d.ci_high, 6),
                "over": None if d is None else d.over,
                "ci_method": None if d is None else d.method}

    def line(self, fmt: str = ".2f") -> str:
        """One Markdown list item."""
        d = self.diff
        ours = ("no CI (one value on a side)" if d is None else
                f"ours {d.mean:+{fmt}} [{d.ci_low:+{fmt}}, {d.ci_high:+{fmt}}] over {d.over}, "
                f"{_METHOD[d.method]}")
        return (f"- {self.table}, {self.column}: paper {self.a} > {self.b} ({self.paper}); "
                f"{ours}: **{self.verdict}**")


def paper_order(table: str, column: str, a: tuple[str, float, CellStats | None],
                b: tuple[str, float, CellStats | None]) -> Claim | None:
    """The claim that the higher of two paper numbers is higher in ours too; None when
    either side is not ours (no cell) or the paper prints them equal.

    a, b: (label, paper mean, our cell).
    """
    if a[2] is None or b[2] is None or a[1] == b[1]:
        return None
    hi, lo = (a, b) if a[1] > b[1] else (b, a)
    return Claim(table, column, hi[0], lo[0], f"{hi[1]:g} vs {lo[1]:g}",
                 difference(hi[2], lo[2]))


def stated(table: str, column: str, a: tuple[str, CellStats | None],
           b: tuple[str, CellStats | None], evidence: str) -> Claim | None:
    """A claim of the paper's text ("A > B"), None when a side is not ours."""
    if a[1] is None or b[1] is None:
        return None
    return Claim(table, column, a[0], b[0], evidence, difference(a[1], b[1]))


def claims_markdown(claims: list[Claim], fmt: str = ".2f") -> list[str]:
    """The "resolved differences" list of a section."""
    if not claims:
        return ["Resolved differences: none to test (a pair the paper orders needs our "
                "numbers on both sides)."]
    held = sum(c.verdict == "holds" for c in claims)
    rev = sum(c.verdict == "reversed" for c in claims)
    return [f"**Resolved differences** ({held} hold, {rev} reversed, "
            f"{len(claims) - held - rev} not resolved; 95% CI of the difference: Student's t "
            "on the per-seed differences where both cells have the same seeds, Welch's t "
            "where their seeds differ, the bootstrap over episodes where a side has one "
            "seed):", "",
            *[c.line(fmt) for c in claims]]
