"""The statistics behind every cell of the report: mean, spread, a 95% bootstrap CI, and
the CI of a difference between two cells.

A cell summarises *units*: training seeds (or TD3-BC seeds) when there are at least two,
else the episodes behind the one seed, stratified by task (a cell that averages several
tasks resamples episodes within each task, so every resample keeps the task mix: the
statistic is the mean over tasks of the per-task means, as Table 1's). The std and the
CI are over the same units (`CellStats.ci_over`); the std is the sample std (n - 1).

The CI is the percentile bootstrap: `RESAMPLES` resamples with replacement from a
generator seeded with `SEED` (the same inputs give the same interval), the 2.5th and
97.5th percentiles of the resampled means. With two seeds it is the interval between
them: a percentile bootstrap over 2-3 values is narrow, which the report says.

A difference A - B is resampled paired by seed when both cells have the same seeds
(per-seed differences), independently otherwise; "A beats B" is claimed only when the
difference's CI excludes 0 (`DiffStats.resolved`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (raises on no values)."""
    if len(values) == 0:
        raise ValueError("mean of no values")
    return float(np.mean(np.asarray(values, dtype=float)))


def std(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1); None for fewer than two values."""
    if len(values) < 2:
        return None
    return float(np.std(np.asarray(values, dtype=float), ddof=1))


def _percentiles(boot: np.ndarray, level: float) -> tuple[float, float]:
    a = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(boot, [a, 100.0 - a])
    return float(lo), float(hi)


def _resample_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """(resamples,) means of `values` resampled with replacement. Two-valued data
    (successes: 0 / 1 or 0 / 100) draw the count of the higher value from the binomial:
    the same distribution, without the (B, n) index array."""
    n = len(values)
    lo, hi = float(values.min()), float(values.max())
    if np.all((values == lo) | (values == hi)):
        k = rng.binomial(n, float(np.mean(values == hi)), size=resamples)
        return lo + (hi - lo) * k / n
    return values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)  # (B, n) -> (B,)


def _boot_strata(strata: Sequence[np.ndarray], rng: np.random.Generator,
                 resamples: int) -> np.ndarray:
    """(resamples,) means over strata of each stratum's resampled mean."""
    return np.mean([_resample_means(s, rng, resamples) for s in strata], axis=0)


def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (at least one value)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("bootstrap CI of no values")
    return _percentiles(_resample_means(v, np.random.default_rng(seed), resamples), level)


def stratified_bootstrap_ci(strata: Sequence[Sequence[float]], *, resamples: int = RESAMPLES,
                            seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over strata of the stratum means, resampling
    within each stratum (e.g. episodes within tasks)."""
    arrs = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not arrs:
        raise ValueError("bootstrap CI of no values")
    return _percentiles(_boot_strata(arrs, np.random.default_rng(seed), resamples), level)


@dataclass(frozen=True)
class CellStats:
    """One cell: its mean, spread and CI over `ci_over`, and what stands behind it."""

    mean: float
    std: float | None  # over `ci_over` units (n - 1); None with one unit
    ci_low: float | None  # None: one value, no interval
    ci_high: float | None
    ci_over: str  # "seeds" | "episodes" | "tasks"
    n: int  # units the std and CI are over
    seeds: tuple[int, ...] = ()  # the (training or TD3-BC) seeds behind the cell
    episodes: int = 0  # evaluation episodes behind the cell (all seeds and tasks)
    # Raw data, for differences: value per unit (seed or task), episodes per task.
    units: Mapping[Any, float] = field(default_factory=dict, repr=False)
    strata: tuple[np.ndarray, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The numbers of results.json (rounded to 6 decimals)."""
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 6)

        return {"seeds": list(self.seeds), "episodes": self.episodes, "n": self.n,
                "mean": r(self.mean), "std": r(self.std), "ci_low": r(self.ci_low),
                "ci_high": r(self.ci_high), "ci_over": self.ci_over}


def summarize(units: Mapping[Any, float], *, unit: str = "seeds",
              strata: Sequence[Sequence[float]] = (), episodes: int | None = None,
              seeds: Sequence[int] | None = None) -> CellStats:
    """A cell from its value per unit (e.g. per training seed) and, for the one-unit
    case, the episodes behind it per task (`strata`, in the cell's scale).

    Two or more units: mean, std and CI over them. One unit: mean over the strata of
    their means (the unit's value), std over the pooled episodes, CI by the stratified
    bootstrap over episodes; without episodes, no CI.
    """
    if not units:
        raise ValueError("a cell needs at least one value")
    vals = [float(v) for v in units.values()]
    arrs = tuple(np.asarray(s, dtype=float) for s in strata if len(s))
    n_ep = int(sum(len(s) for s in arrs)) if episodes is None else int(episodes)
    seed_ids = tuple(int(s) for s in (seeds if seeds is not None else
                                      (units if unit == "seeds" else ())))
    common = {"seeds": seed_ids, "episodes": n_ep, "units": dict(units), "strata": arrs}
    if len(vals) >= 2:
        lo, hi = bootstrap_ci(vals)
        return CellStats(mean(vals), std(vals), lo, hi, unit, len(vals), **common)
    pooled = np.concatenate(arrs) if arrs else np.zeros(0)
    if len(pooled) >= 2:
        lo, hi = stratified_bootstrap_ci(arrs)
        return CellStats(vals[0], std(pooled), lo, hi, "episodes", len(pooled), **common)
    return CellStats(vals[0], None, None, None, unit, 1, **common)


@dataclass(frozen=True)
class DiffStats:
    """A - B: the difference of the means and its bootstrap CI."""

    mean: float
    ci_low: float
    ci_high: float
    over: str  # "seeds (paired)" | "seeds" | "episodes"

    @property
    def resolved(self) -> bool:
        """The CI excludes 0: the sign of the difference is claimed."""
        return self.ci_low > 0.0 or self.ci_high < 0.0

    @property
    def sign(self) -> int:
        """+1 (A > B resolved), -1 (A < B resolved), 0 (not resolved)."""
        return 1 if self.ci_low > 0.0 else (-1 if self.ci_high < 0.0 else 0)


def difference(a: CellStats, b: CellStats, *, resamples: int = RESAMPLES, seed: int = SEED,
               level: float = LEVEL) -> DiffStats | None:
    """The CI of a.mean - b.mean (module docstring); None when neither seeds (>= 2 on both
    sides) nor episodes (>= 2 on both sides) can be resampled.

    Over seeds when both cells have two or more: paired by seed when they have the same
    seeds, else each resampled on its own. Else over episodes, each side's episodes
    (pooled over its seeds, stratified by task) resampled on its own.
    """
    rng = np.random.default_rng(seed)
    if len(a.units) >= 2 and len(b.units) >= 2 and a.ci_over == b.ci_over:
        if set(a.units) == set(b.units):
            d = np.array([a.units[k] - b.units[k] for k in sorted(a.units)], dtype=float)
            lo, hi = _percentiles(_resample_means(d, rng, resamples), level)
            return DiffStats(float(d.mean()), lo, hi, f"{a.ci_over} (paired)")
        va = np.array(list(a.units.values()), dtype=float)
        vb = np.array(list(b.units.values()), dtype=float)
        boot = _resample_means(va, rng, resamples) - _resample_means(vb, rng, resamples)
        lo, hi = _percentiles(boot, level)
        return DiffStats(float(va.mean() - vb.mean()), lo, hi, a.ci_over)
    if sum(map(len, a.strata)) >= 2 and sum(map(len, b.strata)) >= 2:
        boot = _boot_strata(a.strata, rng, resamples) - _boot_strata(b.strata, rng, resamples)
        lo, hi = _percentiles(boot, level)
        mean_a = float(np.mean([s.mean() for s in a.strata]))
        mean_b = float(np.mean([s.mean() for s in b.strata]))
        return DiffStats(mean_a - mean_b, lo, hi, "episodes")
    return None
