"""The field's aggregate metrics over runs x tasks, with rliable's definitions (Agarwal et
al., 2021, "Deep RL at the edge of the statistical precipice"; google-research/rliable),
written here because `rliable.library` does not import with pandas 3.

Scores are given per task, one per run (training seed): ``{task: (runs,) scores}``; tasks
may have different run counts (rliable asks for a (runs, tasks) matrix; this is the same
when they are equal).

- IQM: the interquartile mean of all run x task scores, rliable's `aggregate_iqm` =
  `scipy.stats.trim_mean(scores, 0.25)` on the flattened scores (`iqm`).
- Probability of improvement P(X > Y): per task, the Mann-Whitney U statistic of X's runs
  against Y's over n x m (a tie counts 1/2), averaged over the tasks both have
  (rliable's `probability_of_improvement`).
- Performance profile: the fraction of all run x task scores above tau, for each tau of a
  grid (rliable's `run_score_deviation`, its default profile).

Intervals: rliable's stratified percentile bootstrap over runs - runs resampled with
replacement within each task, tasks kept (`StratifiedBootstrap`), each method on its own
for P(X > Y) (`StratifiedIndependentBootstrap`). It measures the uncertainty from the
runs (seeds), not from the choice of tasks. Like every percentile bootstrap, it runs
narrow when each task has only a few runs (2-5 seeds: `mtdiff.report.stats`); a task
with one run contributes no spread, and with one run on every task there is no interval
(None).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtdiff.report.stats import LEVEL, RESAMPLES, SEED

PROFILE_RESAMPLES = 2_000  # rliable's `create_performance_profile` default
CI_METHOD = "stratified bootstrap over runs (percentile)"

Scores = Mapping[str, Sequence[float]]  # task -> one score per run


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% interval (None: one run per task, no interval)."""

    value: float
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        """Its entry in results.json (rounded to 6 decimals)."""
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 6)

        return {"value": r(self.value), "ci_low": r(self.ci_low), "ci_high": r(self.ci_high),
                "ci_method": CI_METHOD if self.ci_low is not None else None}


def _arrays(scores: Scores) -> dict[str, np.ndarray]:
    arrs = {t: np.asarray(v, dtype=float) for t, v in scores.items() if len(v)}
    if not arrs:
        raise ValueError("aggregates need at least one score: pass {task: [score per run]}")
    return arrs


def _trim_mean(x: np.ndarray) -> np.ndarray:
    """scipy.stats.trim_mean(x, 0.25) along the last axis: drop int(0.25 n) scores at
    each end of the sorted scores, average the rest. (..., n) -> (...)."""
    n = x.shape[-1]
    cut = int(0.25 * n)
    return np.sort(x, axis=-1)[..., cut:n - cut].mean(axis=-1)


def iqm(scores: Scores) -> float:
    """The interquartile mean of all run x task scores (rliable's `aggregate_iqm`)."""
    return float(_trim_mean(np.concatenate(list(_arrays(scores).values()))))


def _resample(arrs: Mapping[str, np.ndarray], rng: np.random.Generator,
              resamples: int) -> dict[str, np.ndarray]:
    """Each task's runs resampled with replacement: task -> (resamples, runs)."""
    return {t: v[rng.integers(0, len(v), size=(resamples, len(v)))] for t, v in arrs.items()}


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    a = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(boot, [a, 100.0 - a], axis=0)
    return float(lo), float(hi)


def _estimate(value: float, boot: Callable[[], np.ndarray] | None, level: float) -> Estimate:
    if boot is None:
        return Estimate(value, None, None)
    lo, hi = _interval(boot(), level)
    return Estimate(value, lo, hi)


def iqm_estimate(scores: Scores, *, resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> Estimate:
    """IQM with its stratified bootstrap interval over runs (module docstring)."""
    arrs = _arrays(scores)

    def boot() -> np.ndarray:
        per_task = _resample(arrs, np.random.default_rng(seed), resamples)
        return _trim_mean(np.concatenate(list(per_task.values()), axis=1))  # (B, N) -> (B,)

    varies = any(len(v) >= 2 for v in arrs.values())
    return _estimate(iqm(arrs), boot if varies else None, level)


def _u_fraction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney U of x against y over n x m, on the last axis: (..., n), (..., m) ->
    (...); P(x > y) + P(x = y) / 2 over all pairs."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def _common(x: Scores, y: Scores) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    ax, ay = _arrays(x), _arrays(y)
    tasks = [t for t in ax if t in ay]
    if not tasks:
        raise ValueError("probability of improvement needs tasks scored for both methods; "
                         f"got {sorted(ax)} and {sorted(ay)}")
    return {t: ax[t] for t in tasks}, {t: ay[t] for t in tasks}


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y) averaged over the tasks both have (rliable's `probability_of_improvement`)."""
    ax, ay = _common(x, y)
    return float(np.mean([_u_fraction(ax[t], ay[t]) for t in ax]))


def poi_estimate(x: Scores, y: Scores, *, resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> Estimate:
    """P(X > Y) with its interval: X's and Y's runs each resampled within every task."""
    ax, ay = _common(x, y)

    def boot() -> np.ndarray:
        rng = np.random.default_rng(seed)
        bx, by = _resample(ax, rng, resamples), _resample(ay, rng, resamples)
        return np.mean([_u_fraction(bx[t], by[t]) for t in ax], axis=0)  # (T, B) -> (B,)

    varies = all(len(ax[t]) >= 2 and len(ay[t]) >= 2 for t in ax)
    return _estimate(probability_of_improvement(ax, ay), boot if varies else None, level)


def performance_profile(scores: Scores, taus: Sequence[float]) -> np.ndarray:
    """(len(taus),) fraction of all run x task scores > tau (rliable's score
    distribution)."""
    flat = np.concatenate(list(_arrays(scores).values()))
    return (flat[:, None] > np.asarray(taus, dtype=float)[None, :]).mean(axis=0)


@dataclass(frozen=True)
class Profile:
    """A performance profile over `taus` and its pointwise 95% band (None: no runs to
    resample)."""

    taus: np.ndarray
    fraction: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None

    def as_dict(self) -> dict[str, Any]:
        """Its entry in results.json."""
        def r(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [round(float(v), 6) for v in a]

        return {"fraction": r(self.fraction), "ci_low": r(self.ci_low),
                "ci_high": r(self.ci_high)}


def profile_estimate(scores: Scores, taus: Sequence[float], *,
                     resamples: int = PROFILE_RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> Profile:
    """The performance profile with a pointwise stratified bootstrap band over runs."""
    arrs = _arrays(scores)
    t = np.asarray(taus, dtype=float)
    point = performance_profile(arrs, t)
    if not any(len(v) >= 2 for v in arrs.values()):
        return Profile(t, point, None, None)
    flat = np.concatenate(list(_resample(arrs, np.random.default_rng(seed),
                                         resamples).values()), axis=1)  # (B, N)
    boot = (flat[:, :, None] > t[None, None, :]).mean(axis=1)  # (B, K)
    a = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(boot, [a, 100.0 - a], axis=0)  # (K,) each
    return Profile(t, point, lo, hi)
