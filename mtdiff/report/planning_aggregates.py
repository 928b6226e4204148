"""The planning suites' method comparisons (Table 1's Meta-World views, Table 5's
Cheetah-vel and Ant-dir task groups) as the field's aggregates (`aggregates`): per method
the IQM of its training seed x task scores with its interval, the probability that each
method improves on each other, and performance profiles.

A score is one training seed's mean over its evaluation episodes of one task: success in
percent (Meta-World) or the episode return (Cheetah-vel, Ant-dir; raw returns, so a task
of another target speed or direction has another scale). The intervals are over
training seeds (runs), tasks kept (`aggregates`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtdiff.report import paper
from mtdiff.report.aggregates import (
    CI_METHOD,
    Estimate,
    Profile,
    iqm_estimate,
    poi_estimate,
    profile_estimate,
)
from mtdiff.report.cells import RETURN, SUCCESS
from mtdiff.report.planning import VIEWS, label_of, methods_of, select
from mtdiff.report.records import EvalRun
from mtdiff.report.table import MISSING, Stat, Table, Value

PROFILE_FILE = "performance_profiles.png"
_EPISODES = {SUCCESS: ("success", 100.0), RETURN: ("returns", 1.0)}  # key, scale
NOTE = ("rliable's definitions (Agarwal et al., 2021): IQM = the mean of the middle half of "
        "all training seed x task scores; P(X > Y) = per task the probability that a seed "
        "of X scores above a seed of Y (ties 1/2), averaged over tasks; a performance "
        "profile = the fraction of seed x task scores above tau. 95% intervals: "
        f"{CI_METHOD}, 10,000 resamples (2,000 for the profiles' bands), tasks kept; with "
        "2-3 seeds per task read them as a lower bound on the uncertainty. P(Y > X) = 1 - "
        "P(X > Y).")


@dataclass(frozen=True)
class Comparison:
    """The methods evaluated on one suite, view and task group, scored per seed and task."""

    name: str  # file stem part, e.g. "table1_near-optimal"
    title: str
    table: str  # the table whose cells these are: "table1" | "table5"
    suite: str
    view: str | None
    group: str
    metric: str  # SUCCESS | RETURN
    scores: dict[str, dict[str, list[float]]]  # method -> task -> one score per seed
    seeds: dict[str, list[int]]  # method -> its training seeds

    def taus(self, points: int = 101) -> np.ndarray:
        """The profile's thresholds: 0-100% for success, the scores' range for returns."""
        if self.metric == SUCCESS:
            return np.linspace(0.0, 100.0, points)
        flat = [x for per in self.scores.values() for v in per.values() for x in v]
        lo, hi = min(flat), max(flat)
        return np.linspace(lo, hi if hi > lo else lo + 1.0, points)


def seed_task_scores(runs: Sequence[EvalRun], group: str, metric: str
                     ) -> tuple[dict[str, list[float]], list[int]]:
    """{task: [score per training seed]} of `runs` (one per seed) on `group`'s tasks (own
    prompt), and the seeds, sorted."""
    key, scale = _EPISODES[metric]
    scores: dict[str, list[float]] = defaultdict(list)
    seeds = []
    for r in sorted(runs, key=lambda r: r.seed):
        by_task: dict[str, list[float]] = defaultdict(list)
        for e in r.results(group):
            by_task[e["task"]] += [scale * float(x) for x in e[key]]
        for t, v in by_task.items():
            if v:
                scores[t].append(float(np.mean(v)))
        if any(by_task.values()):
            seeds.append(r.seed)
    return dict(scores), seeds


def comparisons(evals: Sequence[EvalRun]) -> list[Comparison]:
    """Table 1's views (training tasks) and Table 5's suite x task group, each with the
    methods that have scores there (MTDiff-P first)."""
    specs = [("table1", "metaworld", v, "train", SUCCESS,
              f"Meta-World, {v}, training tasks: success (%)") for v in VIEWS]
    specs += [("table5", s, None, g, RETURN, f"{s}, {'training' if g == 'train' else 'held-out'}"
               " tasks: return") for s in paper.TABLE5_SUITES for g in ("train", "heldout")]
    out = []
    for table, suite, view, group, metric, title in specs:
        scores, seeds = {}, {}
        for m in methods_of(evals, suite, ("mtdiff-p",)):
            per_task, s = seed_task_scores(select(evals, suite, m, view), group, metric)
            if per_task:
                scores[m], seeds[m] = per_task, s
        if scores:
            name = f"{table}_{view or suite}" + ("" if view else f"_{group}")
            out.append(Comparison(name, title, table, suite, view, group, metric, scores,
                                  seeds))
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _stat(e: Estimate, fmt: str) -> Stat:
    ci = (e.ci_low, e.ci_high) if e.ci_low is not None else None
    return Stat(e.value, None, fmt, ci=ci)


def _complement(e: Estimate) -> Estimate:
    """P(Y > X) from P(X > Y): per task U_yx = 1 - U_xy, in every resample too."""
    lo, hi = (None, None) if e.ci_low is None else (1.0 - e.ci_high, 1.0 - e.ci_low)
    return Estimate(1.0 - e.value, lo, hi)


def summarize(c: Comparison) -> tuple[Table, dict[str, Any], dict[str, Profile]]:
    """The comparison's table (IQM, P(row > column)), its results.json entry and the
    profiles by method label (for the figure)."""
    ms = list(c.scores)
    iqms = {m: iqm_estimate(c.scores[m]) for m in ms}
    poi: dict[tuple[str, str], Estimate] = {}
    for i, x in enumerate(ms):
        for y in ms[i + 1:]:
            poi[(x, y)] = poi_estimate(c.scores[x], c.scores[y])
            poi[(y, x)] = _complement(poi[(x, y)])
    taus = c.taus()
    profiles = {m: profile_estimate(c.scores[m], taus) for m in ms}
    fmt = ".2f" if c.metric == SUCCESS else ".1f"
    rows: list[list[Value]] = []
    for x in ms:
        n_scores = sum(len(v) for v in c.scores[x].values())
        rows.append([label_of(x), _stat(iqms[x], fmt),
                     f"{_count(len(c.seeds[x]), 'seed')} x {_count(len(c.scores[x]), 'task')} "
                     f"({n_scores})",
                     *[MISSING if x == y else _stat(poi[(x, y)], ".2f") for y in ms]])
    cols = ["Method", "IQM (ours)", "Scores", *[f"P(> {label_of(y)})" for y in ms]]
    table = Table(f"aggregates_{c.name}", f"{c.title}: IQM and probability of improvement "
                  "of the row's method over the column's", cols, rows,
                  meta={"scores": "one per training seed and task"},
                  ci_columns=tuple(cols[1:2] + cols[3:]))
    unit = {SUCCESS: "%", RETURN: "return"}[c.metric]
    entry = {"name": c.name, "table": c.table, "suite": c.suite, "view": c.view,
             "group": c.group, "metric": c.metric, "unit": unit,
             "tasks": sorted({t for per in c.scores.values() for t in per}),
             "methods": {m: {"label": label_of(m), "seeds": c.seeds[m],
                             "tasks": len(c.scores[m]),
                             "scores": sum(len(v) for v in c.scores[m].values()),
                             "iqm": iqms[m].as_dict()} for m in ms},
             "probability_of_improvement": [{"x": x, "y": y, **e.as_dict()}
                                            for (x, y), e in poi.items()],
             "profile": {"taus": [round(float(t), 6) for t in taus],
                         "methods": {m: p.as_dict() for m, p in profiles.items()}},
             "figure": PROFILE_FILE}
    return table, entry, {label_of(m): p for m, p in profiles.items()}
