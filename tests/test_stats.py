"""The report's statistics at small n: Student's t quantiles against printed tables,
seed-level t intervals, paired and Welch differences, rliable's aggregates against
hand-computed values, and the coverage benchmark (`benchmarks/ci_coverage.py`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtdiff.report import aggregates as agg
from mtdiff.report.stats import (
    bootstrap_ci,
    difference,
    stratified_bootstrap_ci,
    summarize,
    t_ci,
    t_quantile,
    welch_ci,
)

REPO = Path(__file__).resolve().parents[1]


# --- Student's t ----------------------------------------------------------------------------
@pytest.mark.parametrize(("p", "df", "table"), [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776),
    (0.975, 9, 2.262), (0.975, 30, 2.042), (0.95, 10, 1.812), (0.995, 5, 4.032),
    (0.025, 2, -4.303), (0.5, 7, 0.0)])
def test_t_quantile_against_printed_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)


def test_t_quantile_against_scipy_at_fractional_df():
    """Welch's degrees of freedom are not whole numbers."""
    st = pytest.importorskip("scipy.stats")
    for df in (0.7, 1.3, 2.5, 4.8, 17.2, 250.0):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(st.t.ppf(p, df), rel=1e-9)


def test_t_quantile_rejects_bad_input():
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.975, 0)


# --- seed-level intervals -------------------------------------------------------------------
def test_three_seeds_get_the_t_interval():
    # 1, 2, 6: mean 3, s = sqrt((4 + 1 + 9) / 2) = sqrt(7), se = sqrt(7 / 3);
    # t_0.975,2 = 4.3027 -> 3 ± 6.5723
    cell = summarize({0: 1.0, 1: 2.0, 2: 6.0})
    half = 4.302653 * math.sqrt(7 / 3)
    assert (cell.ci_over, cell.ci_method, cell.n) == ("seeds", "t", 3)
    assert (cell.ci_low, cell.ci_high) == pytest.approx((3 - half, 3 + half))
    assert cell.as_dict()["ci_method"] == "t"


def test_two_seeds_are_not_their_range():
    # the percentile bootstrap over 2 values gave [37.5, 62.5]; t with 1 df: ± 12.706 se
    cell = summarize({0: 37.5, 1: 62.5})
    assert (cell.ci_low, cell.ci_high) == pytest.approx((50 - 12.706205 * 12.5,
                                                         50 + 12.706205 * 12.5))


def test_one_value_has_no_interval():
    one = summarize({0: 3.0})
    assert (one.ci_low, one.ci_high, one.ci_method) == (None, None, None)
    assert t_ci([3.0]) is None and welch_ci([1.0, 2.0], [3.0]) is None
    # one seed with episodes: the bootstrap over its episodes (units = episodes)
    ep = summarize({0: 0.5}, strata=[[1, 0, 0, 0], [1, 1, 1, 0]])
    assert (ep.ci_over, ep.ci_method, ep.n) == ("episodes", "bootstrap", 8)
    assert ep.ci_low < 0.5 < ep.ci_high


def test_welch_interval_by_hand():
    # a: var 3, n 4 -> 0.75; b: var 0.5, n 2 -> 0.25; se^2 = 1;
    # df = 1 / (0.75^2 / 3 + 0.25^2 / 1) = 4; mean difference 0 -> ± 2.7764
    assert welch_ci([0, 0, 3, 3], [1, 2]) == pytest.approx((-2.776445, 2.776445))
    assert welch_ci([1, 1], [0, 0]) == (1.0, 1.0)  # no spread on either side


def test_differences_name_their_method():
    a = summarize({0: 3.0, 1: 4.5, 2: 4.5})
    b = summarize({0: 1.0, 1: 2.0, 2: 3.0})
    # per-seed differences 2, 2.5, 2.5 - 1 = 1.5: mean 2, s 0.5 -> 2 ± 4.3027 * 0.5 / sqrt(3)
    d = difference(a, b)
    half = 4.302653 * 0.5 / math.sqrt(3)
    assert (d.over, d.method) == ("seeds (paired)", "t")
    assert (d.ci_low, d.ci_high) == pytest.approx((2 - half, 2 + half))
    assert d.resolved and d.sign == 1
    # the same values on other seeds: Welch's t, which cannot remove the seeds' shared
    # variation and does not resolve the difference
    w = difference(a, summarize({7: 1.0, 8: 2.0, 9: 3.0}))
    assert (w.over, w.method, w.mean) == ("seeds", "welch", 2.0)
    assert (w.ci_low, w.ci_high) == welch_ci([3.0, 4.5, 4.5], [1.0, 2.0, 3.0])
    assert w.ci_low < 0.0 < d.ci_low and not w.resolved


# --- the bootstrap over episodes (one seed), and differences ---------------------------
def test_bootstrap_against_hand_computed_cases():
    # [0, 0, 0, 1]: a resample's mean is k/4, k ~ Binomial(4, 1/4): P(k=0) = 0.316 >
    # 2.5%, P(k <= 2) = 0.949 < 97.5% < P(k <= 3) = 0.996 -> CI [0, 0.75].
    assert bootstrap_ci([0, 0, 0, 1]) == (0.0, 0.75)
    assert bootstrap_ci([0, 0, 0, 100]) == (0.0, 75.0)  # any two values: same law
    # more than two values (index resampling): the sum of 4 draws from {0,1,2,3} is <= 1
    # with probability 5/256 = 2.0% and <= 2 with 15/256 = 5.9% -> 2.5th percentile of
    # the mean 2/4; by symmetry the 97.5th is 10/4.
    assert bootstrap_ci([0, 1, 2, 3]) == (0.5, 2.5)
    # two values: P(both low) = 1/4 > 2.5% -> the interval between them
    assert bootstrap_ci([37.5, 62.5]) == (37.5, 62.5)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    # same seed, same interval; another seed may move it
    assert bootstrap_ci(np.arange(20.0)) == bootstrap_ci(np.arange(20.0))
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_one_seed_ci_over_episodes():
    # Strata [1,0,0,0] and [1,1,1,0]: mean over tasks = (B1 + 4 - B2) / 8 with B1, B2 ~
    # Binomial(4, 1/4): P(B1 - B2 <= -3) = 0.018 < 2.5% < P(<= -2) = 0.105 -> X = 2 / 8.
    assert stratified_bootstrap_ci([[1, 0, 0, 0], [1, 1, 1, 0]]) == (0.25, 0.75)
    cell = summarize({0: 0.5}, strata=[[1, 0, 0, 0], [1, 1, 1, 0]])
    assert (cell.ci_over, cell.n, cell.episodes, cell.seeds) == ("episodes", 8, 8, (0,))
    assert cell.std == pytest.approx(np.std([1, 0, 0, 0, 1, 1, 1, 0], ddof=1))
    one = summarize({0: 0.5})  # one value, no episodes: no spread, no interval
    assert (one.std, one.ci_low, one.ci_high, one.n) == (None, None, None, 1)


def test_difference_paired_by_seed():
    a = summarize({0: 1.0, 1: 2.0, 2: 3.0})
    b = summarize({0: 0.0, 1: 1.0, 2: 2.0})
    d = difference(a, b)
    # the per-seed differences are all 1: s = 0, the t interval is [1, 1]
    assert (d.mean, d.ci_low, d.ci_high, d.over, d.method) == (1.0, 1.0, 1.0,
                                                               "seeds (paired)", "t")
    assert d.resolved and d.sign == 1
    # other seeds: Welch's t. Both s = 1, n = 3: se = sqrt(2/3), df = (2/3)^2 / (2 (1/3)^2
    # / 2) = 4, t_0.975,4 = 2.776 -> 1 ± 2.267.
    c = summarize({3: 0.0, 4: 1.0, 5: 2.0})
    u = difference(a, c)
    assert (u.over, u.method, u.mean) == ("seeds", "welch", 1.0)
    assert (u.ci_low, u.ci_high) == pytest.approx((1 - 2.776445 * (2 / 3) ** 0.5,
                                                   1 + 2.776445 * (2 / 3) ** 0.5))
    assert not u.resolved and u.sign == 0
    # one seed on a side: over episodes; no episodes: no CI
    e = difference(summarize({0: 0.9}, strata=[[1] * 9 + [0]]),
                   summarize({0: 0.1}, strata=[[0] * 9 + [1]]))
    assert e.over == "episodes" and e.method == "bootstrap" and e.resolved
    assert e.mean == pytest.approx(0.8)
    assert difference(summarize({0: 1.0}), b) is None


# --- rliable's aggregates -------------------------------------------------------------------
def test_iqm_by_hand():
    # 8 scores sorted 1 2 3 4 10 20 30 40: drop int(8 / 4) = 2 at each end -> (3+4+10+20)/4
    assert agg.iqm({"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}) == 9.25
    assert agg.iqm({"a": [1, 2, 3, 4, 100]}) == 3.0  # drop 1 at each end
    assert agg.iqm({"a": [1, 5], "b": [9]}) == 5.0  # 3 scores: nothing dropped


def test_iqm_matches_scipy_trim_mean():
    st = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=(5, 7))  # (runs, tasks)
    got = agg.iqm({f"t{j}": x[:, j] for j in range(7)})
    assert got == pytest.approx(st.trim_mean(x, 0.25, axis=None))


def test_probability_of_improvement_by_hand():
    x = {"a": [1, 2, 3], "b": [5, 5], "only-x": [9]}
    y = {"a": [2, 2, 0], "b": [5, 1]}
    # a: 1 beats 0 (1); 2 ties 2, 2 and beats 0 (2); 3 beats all (3) -> 6 / 9
    # b: each 5 ties 5 and beats 1 -> 1.5 + 1.5 over 4 = 0.75; only-x: not in y, left out
    assert agg.probability_of_improvement(x, y) == pytest.approx((2 / 3 + 0.75) / 2)
    assert agg.probability_of_improvement(y, x) == pytest.approx(1 - (2 / 3 + 0.75) / 2)
    assert agg.probability_of_improvement(x, x) == 0.5
    with pytest.raises(ValueError, match="tasks scored for both"):
        agg.probability_of_improvement({"a": [1]}, {"b": [1]})


def test_intervals_resample_runs_within_tasks():
    # runs agree within each task: every stratified resample is the same, so the
    # interval is the point (resampling across tasks would move it)
    e = agg.iqm_estimate({"a": [0, 0], "b": [100, 100]})
    assert (e.value, e.ci_low, e.ci_high) == (50.0, 50.0, 50.0)
    spread = agg.iqm_estimate({"a": [0, 40, 80], "b": [10, 50, 90]})
    assert spread.ci_low < spread.value < spread.ci_high
    assert spread.as_dict()["ci_method"] == agg.CI_METHOD
    poi = agg.poi_estimate({"a": [3, 4]}, {"a": [1, 2]})
    assert (poi.value, poi.ci_low, poi.ci_high) == (1.0, 1.0, 1.0)
    # one run per task: no interval
    assert agg.iqm_estimate({"a": [1], "b": [2]}).ci_low is None
    assert agg.poi_estimate({"a": [1]}, {"a": [0, 2]}).ci_low is None
    with pytest.raises(ValueError, match="at least one score"):
        agg.iqm({})


def test_performance_profile_by_hand():
    scores = {"a": [0, 50], "b": [100, 25]}
    assert agg.performance_profile(scores, [0, 25, 50, 99]).tolist() == [0.75, 0.5, 0.25, 0.25]
    prof = agg.profile_estimate(scores, [0, 25, 50, 99], resamples=500)
    assert prof.fraction.tolist() == [0.75, 0.5, 0.25, 0.25]
    assert (prof.ci_low <= prof.fraction).all() and (prof.fraction <= prof.ci_high).all()


# --- the coverage benchmark -----------------------------------------------------------------
def test_ci_coverage_benchmark_holds_at_three_seeds():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ci_coverage.py"),
                          "--dist", "normal", "--draws", "150", "--resamples", "2000"],
                         capture_output=True, text=True, timeout=300, cwd=REPO, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"coverage_n3", "coverage_n5", "coverage_diff_n3", "bootstrap_coverage_n3",
            "bootstrap_coverage_diff_n3", "coverage_welch_n3"} <= set(res)
    assert res["coverage_n3"] >= 0.9 and res["coverage_diff_n3"] >= 0.9
    # the old percentile bootstrap over 2 seeds is their range: about half the time
    assert res["bootstrap_coverage_n2"] < 0.7
