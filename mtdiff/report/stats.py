"""The statistics behind every cell of the report: mean, spread, a 95% CI, and the CI of a
difference between two cells.

A cell summarises *units*: training seeds (or TD3-BC seeds) when there are at least two,
else the episodes behind the one seed, stratified by task (a cell that averages several
tasks resamples episodes within each task, so every resample keeps the task mix: the
statistic is the mean over tasks of the per-task means, as Table 1's). The std and the
CI are over the same units (`CellStats.ci_over`); the std is the sample std (n - 1).
Each interval names its method (`CellStats.ci_method`, `DiffStats.method`):

- over seeds (or tasks), n >= 2: Student's t, mean ± t_{0.975, n-1} s / sqrt(n) ("t").
  Why t: the seeds are few (2-5), and a percentile bootstrap over n values is never
  wider than their range. Of normal per-seed scores, the bootstrap covers the true mean
  52% of the time at n = 2, 74% at n = 3 and 82% at n = 5; the t interval 94-95% at each
  (`benchmarks/ci_coverage.py`, 2,000 draws). It is exact for normal scores only: on
  skewed ones (lognormal, sigma 1) it covers 82% at n = 3 (the bootstrap 65%), and
  seeds that all score the same (0/1 outcomes) give s = 0, a zero-width interval.
- over episodes, one seed: the percentile bootstrap, stratified by task ("bootstrap"):
  `RESAMPLES` resamples from a generator seeded with `SEED` (the same inputs give the same
  interval). Its n is the episodes (tens to thousands), where the bootstrap holds; it
  covers episode noise only, not the spread between training seeds.
- one value: no interval (None), never [x, x].

A difference A - B: over seeds when both cells have two or more, by the t interval of
the per-seed differences when both have the same seeds ("t", paired), else by Welch's t
interval ("welch"); else over episodes, each side resampled on its own ("bootstrap").
"A beats B" is claimed only when the difference's CI excludes 0 (`DiffStats.resolved`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95

CiMethod = Literal["t", "welch", "bootstrap"]


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


# --- Student's t ----------------------------------------------------------------------------
def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz;
    Numerical Recipes 6.4), converging fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _beta_inc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                 + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom:
    for t >= 0 it is I_{df / (df + t^2)}(df / 2, 1 / 2) / 2."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _beta_inc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (e.g. t_quantile(0.975,
    2) = 4.303), by bisection on the upper tail to 1e-12 relative: no scipy needed."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > tail:  # bracket: P(T > hi) <= tail
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_sf(mid, df) > tail else (lo, mid)
    return 0.5 * (lo + hi)


def t_ci(values: Sequence[float], *, level: float = LEVEL) -> tuple[float, float] | None:
    """Student's t interval of the mean, mean ± t_{(1+level)/2, n-1} s / sqrt(n); None for
    fewer than two values (no interval from one). Equal values give [x, x]: s = 0."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    m, half = float(v.mean()), 0.0
    s = float(v.std(ddof=1))
    if s > 0.0:
        half = t_quantile(0.5 + level / 2.0, v.size - 1) * s / math.sqrt(v.size)
    return m - half, m + half


def welch_ci(a: Sequence[float], b: Sequence[float], *,
             level: float = LEVEL) -> tuple[float, float] | None:
    """Welch's t interval of mean(a) - mean(b) for independent samples of unequal
    variance (Welch-Satterthwaite degrees of freedom); None unless both have two values."""
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if va.size < 2 or vb.size < 2:
        return None
    d = float(va.mean() - vb.mean())
    qa, qb = va.var(ddof=1) / va.size, vb.var(ddof=1) / vb.size  # squared standard errors
    se2 = float(qa + qb)
    if se2 == 0.0:
        return d, d
    df = se2 ** 2 / (qa ** 2 / (va.size - 1) + qb ** 2 / (vb.size - 1))
    half = t_quantile(0.5 + level / 2.0, float(df)) * math.sqrt(se2)
    return d - half, d + half


# --- the bootstrap (episodes of one seed) ---------------------------------------------------
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
    """Percentile bootstrap CI of the mean of `values` (at least one value). For many
    units (episodes); over a few seeds it is too narrow (module docstring): use `t_ci`."""
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


# --- cells and differences ------------------------------------------------------------------
@dataclass(frozen=True)
class CellStats:
    """One cell: its mean, spread and CI over `ci_over`, and what stands behind it."""

    mean: float
    std: float | None  # over `ci_over` units (n - 1); None with one unit
    ci_low: float | None  # None: one value, no interval
    ci_high: float | None
    ci_over: str  # "seeds" | "episodes" | "tasks"
    n: int  # units the std and CI are over
    ci_method: CiMethod | None = None  # "t" over seeds / tasks, "bootstrap" over episodes
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
                "ci_high": r(self.ci_high), "ci_over": self.ci_over,
                "ci_method": self.ci_method}


def summarize(units: Mapping[Any, float], *, unit: str = "seeds",
              strata: Sequence[Sequence[float]] = (), episodes: int | None = None,
              seeds: Sequence[int] | None = None, level: float = LEVEL) -> CellStats:
    """A cell from its value per unit (e.g. per training seed) and, for the one-unit
    case, the episodes behind it per task (`strata`, in the cell's scale).

    Two or more units: mean, std and the t interval over them. One unit: mean over the
    strata of their means (the unit's value), std over the pooled episodes, CI by the
    stratified bootstrap over episodes; without episodes, no CI.
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
        lo, hi = t_ci(vals, level=level) or (None, None)
        return CellStats(mean(vals), std(vals), lo, hi, unit, len(vals), "t", **common)
    pooled = np.concatenate(arrs) if arrs else np.zeros(0)
    if len(pooled) >= 2:
        lo, hi = stratified_bootstrap_ci(arrs, level=level)
        return CellStats(vals[0], std(pooled), lo, hi, "episodes", len(pooled), "bootstrap",
                         **common)
    return CellStats(vals[0], None, None, None, unit, 1, None, **common)


@dataclass(frozen=True)
class DiffStats:
    """A - B: the difference of the means and its CI (`method`: module docstring)."""

    mean: float
    ci_low: float
    ci_high: float
    over: str  # "seeds (paired)" | "seeds" | "episodes" (or "tasks ...")
    method: CiMethod = "t"

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
    sides) nor episodes (>= 2 on both sides) stand behind both cells.

    Over seeds when both cells have two or more: the t interval of the per-seed
    differences when they have the same seeds (paired), else Welch's t interval. Else over
    episodes: each side's episodes (pooled over its seeds, stratified by task) resampled
    on its own, the percentile bootstrap (`resamples`, `seed`).
    """
    if len(a.units) >= 2 and len(b.units) >= 2 and a.ci_over == b.ci_over:
        if set(a.units) == set(b.units):
            d = np.array([a.units[k] - b.units[k] for k in sorted(a.units)], dtype=float)
            lo, hi = t_ci(d, level=level)  # type: ignore[misc]  # n >= 2: an interval
            return DiffStats(float(d.mean()), lo, hi, f"{a.ci_over} (paired)", "t")
        va, vb = list(a.units.values()), list(b.units.values())
        lo, hi = welch_ci(va, vb, level=level)  # type: ignore[misc]
        return DiffStats(mean(va) - mean(vb), lo, hi, a.ci_over, "welch")
    if sum(map(len, a.strata)) >= 2 and sum(map(len, b.strata)) >= 2:
        rng = np.random.default_rng(seed)
        boot = _boot_strata(a.strata, rng, resamples) - _boot_strata(b.strata, rng, resamples)
        lo, hi = _percentiles(boot, level)
        mean_a = float(np.mean([s.mean() for s in a.strata]))
        mean_b = float(np.mean([s.mean() for s in b.strata]))
        return DiffStats(mean_a - mean_b, lo, hi, "episodes", "bootstrap")
    return None
