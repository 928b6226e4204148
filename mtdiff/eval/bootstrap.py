"""Confidence intervals of success rates, from evaluation episodes grouped by
training seed and task: the report's statistics (`mtdiff.report.stats`) on that grouping.

A condition's outcomes are nested: training seeds -> tasks (or maps) -> episodes,
``{seed: {task: (n,) 0/1 array}}``. Its statistic is the suite's success rate as Table 1
reports it: the mean over tasks of each task's success rate, averaged over training
seeds. As every cell of the report (`mtdiff.report.stats.summarize`): with two or more
training seeds the interval is over seeds (Student's t); with one, over episodes resampled
within each task (the percentile bootstrap; tasks are the fixed set evaluated, not
resampled), so it covers episode noise only (not training noise), and says so where it
is printed.

A difference between two conditions (after - before, right prompt - wrong prompt) is
`mtdiff.report.stats.difference` (paired by seed when both have the same seeds); it is
*resolved* when its interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtdiff.report import stats

Outcomes = dict[Any, dict[str, np.ndarray]]  # seed -> task -> (episodes,) 0/1


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval (`success_ci`, `difference_ci`)."""

    mean: float
    lo: float
    hi: float

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0 (meaningful for a difference)."""
        return self.lo > 0.0 or self.hi < 0.0

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def statistic(outcomes: Outcomes) -> float:
    """Mean over seeds of the mean over tasks of each task's success rate."""
    return float(np.mean([np.mean([np.mean(v) for v in tasks.values()])
                          for tasks in outcomes.values()]))


def _check(outcomes: Outcomes) -> None:
    if not outcomes or any(not t or any(len(v) == 0 for v in t.values())
                           for t in outcomes.values()):
        raise ValueError("bootstrap needs at least one seed, task and episode per condition")


def cell(outcomes: Outcomes) -> stats.CellStats:
    """The condition as a report cell: per-seed success; episodes per (seed, task) as
    strata (the CI with one seed; a difference with a one-seed condition)."""
    _check(outcomes)
    units = {s: statistic({s: tasks}) for s, tasks in outcomes.items()}
    strata = [np.asarray(v, float) for tasks in outcomes.values() for v in tasks.values()]
    return stats.summarize(units, strata=strata)


def success_ci(outcomes: Outcomes, *, n_boot: int = stats.RESAMPLES, seed: int = stats.SEED,
               level: float = stats.LEVEL) -> Interval:
    """The condition's success rate with its interval: Student's t over two or more
    training seeds, else the percentile bootstrap over the episodes of the one seed."""
    c = cell(outcomes)
    if len(c.units) >= 2:  # over seeds: the t interval, as the report's cells
        lo, hi = stats.t_ci(list(c.units.values()), level=level)  # type: ignore[misc]
    else:
        lo, hi = stats.stratified_bootstrap_ci(c.strata, resamples=n_boot, seed=seed,
                                               level=level)
    return Interval(c.mean, lo, hi)


def difference_ci(a: Outcomes, b: Outcomes, *, n_boot: int = stats.RESAMPLES,
                  seed: int = stats.SEED, level: float = stats.LEVEL) -> Interval:
    """b - a with its interval (`mtdiff.report.stats.difference`)."""
    d = stats.difference(cell(b), cell(a), resamples=n_boot, seed=seed, level=level)
    assert d is not None  # every condition has episodes (`_check`)
    return Interval(d.mean, d.ci_low, d.ci_high)


def outcomes_from_episodes(records: list[dict[str, Any]], seed: Any, *, key: str = "task",
                           where: dict[str, Any] | None = None) -> Outcomes:
    """Group an evaluation's per-job records (the ``episodes`` of its file,
    `layout.evaluation_file`) by task into {seed: {task: successes}}; `where` keeps records
    whose fields match."""
    tasks: dict[str, list[float]] = {}
    for r in records:
        if where and any(r.get(k) != v for k, v in where.items()):
            continue
        tasks.setdefault(str(r[key]), []).extend(float(s) for s in r["success"])
    return {seed: {t: np.asarray(v) for t, v in tasks.items()}}


def episode_intervals(records: list[dict[str, Any]], *, key: str = "task") -> dict[str, float]:
    """The interval of an evaluation's success rate and average return, from its per-job
    records (one training seed, so over its episodes: resampled within each task, pooled
    over evaluation seeds, percentile bootstrap as `success_ci`):
    ``{"success_ci_low", "success_ci_high", "return_ci_low", "return_ci_high"}``, in the
    records' scale; no success bounds where the suite defines no success (None)."""
    success: dict[str, list[float]] = {}
    returns: dict[str, list[float]] = {}
    for r in records:
        returns.setdefault(str(r[key]), []).extend(float(x) for x in r["returns"])
        if r.get("success") is not None:
            success.setdefault(str(r[key]), []).extend(float(x) for x in r["success"])
    out: dict[str, float] = {}
    for name, strata in (("success", success), ("return", returns)):
        if sum(len(v) for v in strata.values()) >= 2:
            lo, hi = stats.stratified_bootstrap_ci(list(strata.values()))
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    return out
