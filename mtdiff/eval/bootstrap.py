"""Bootstrap confidence intervals for success rates over evaluation episodes.

A condition's outcomes are nested: training seeds -> tasks (or maps) -> episodes,
``{seed: {task: (n,) 0/1 array}}``. Its statistic is the suite's success rate as Table 1
reports it: the mean over tasks of each task's success rate, averaged over training
seeds. The bootstrap resamples at every level that varies between reruns: training seeds
with replacement (when there are several), then episodes within each (seed, task) with
replacement; tasks are the fixed set evaluated, not resampled. With one training seed the
interval covers episode noise only (not training noise), and says so where it is printed.

A difference between two conditions (after - before, right prompt - wrong prompt) is
bootstrapped from independent resamples of each; it is *resolved* when its interval
excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Outcomes = dict[Any, dict[str, np.ndarray]]  # seed -> task -> (episodes,) 0/1


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval."""

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


def _resample(outcomes: Outcomes, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """(n_boot,) bootstrap replicates of `statistic`."""
    seeds = list(outcomes)
    # Per (seed, task): (n_boot,) replicate success rates, from n draws with replacement.
    # A binomial draw of n with the observed rate is the same distribution, and cheap.
    per = {s: np.stack([rng.binomial(len(v), np.mean(v), size=n_boot) / len(v)
                        for v in outcomes[s].values()]).mean(axis=0)  # (n_boot,) task mean
           for s in seeds}
    if len(seeds) == 1:
        return per[seeds[0]]
    pick = rng.integers(len(seeds), size=(n_boot, len(seeds)))  # seeds with replacement
    table = np.stack([per[s] for s in seeds], axis=1)  # (n_boot, n_seeds)
    return np.take_along_axis(table, pick, axis=1).mean(axis=1)


def _check(outcomes: Outcomes) -> None:
    if not outcomes or any(not t or any(len(v) == 0 for v in t.values())
                           for t in outcomes.values()):
        raise ValueError("bootstrap needs at least one seed, task and episode per condition")


def success_ci(outcomes: Outcomes, *, n_boot: int = 10_000, seed: int = 0,
               level: float = 0.95) -> Interval:
    """The condition's success rate with its percentile-bootstrap interval."""
    _check(outcomes)
    reps = _resample(outcomes, np.random.default_rng(seed), n_boot)
    a = (1.0 - level) / 2
    return Interval(statistic(outcomes), float(np.quantile(reps, a)),
                    float(np.quantile(reps, 1 - a)))


def difference_ci(a: Outcomes, b: Outcomes, *, n_boot: int = 10_000, seed: int = 0,
                  level: float = 0.95) -> Interval:
    """b - a with its interval (independent resamples of the two conditions)."""
    _check(a)
    _check(b)
    rng = np.random.default_rng(seed)
    reps = _resample(b, rng, n_boot) - _resample(a, rng, n_boot)
    q = (1.0 - level) / 2
    return Interval(statistic(b) - statistic(a), float(np.quantile(reps, q)),
                    float(np.quantile(reps, 1 - q)))


def outcomes_from_episodes(records: list[dict[str, Any]], seed: Any, *, key: str = "task",
                           where: dict[str, Any] | None = None) -> Outcomes:
    """Group an evaluation's per-job records (`eval-<suite>.json`'s ``episodes``) by task
    into {seed: {task: successes}}; `where` keeps records whose fields match."""
    tasks: dict[str, list[float]] = {}
    for r in records:
        if where and any(r.get(k) != v for k, v in where.items()):
            continue
        tasks.setdefault(str(r[key]), []).extend(float(s) for s in r["success"])
    return {seed: {t: np.asarray(v) for t, v in tasks.items()}}
