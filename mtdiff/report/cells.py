"""Cells from records: the statistics of an evaluation group or of TD3-BC runs, and
`Results`, which collects every cell the tables show for `report/results.json`.

Scales: success rates in percent (the paper's), returns as episode returns, Table 4's
metrics as measured. A cell's value per training seed is the mean over its tasks of each
task's mean over that seed's episodes (every evaluation seed); with two or more
seeds the CI is Student's t over them; with one it resamples that seed's episodes within
each task (`stats.summarize`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtdiff.report import paper
from mtdiff.report.records import EvalRun
from mtdiff.report.stats import CellStats, summarize
from mtdiff.report.table import MISSING, Stat, Value

SUCCESS, RETURN = "success", "return"
_EPISODE_KEY = {SUCCESS: "success", RETURN: "returns"}
_SCALE = {SUCCESS: 100.0, RETURN: 1.0}


def eval_cell(runs: Iterable[EvalRun], *, group: str | None, prompt: str = "own",
              metric: str = SUCCESS, task: str | None = None) -> CellStats | None:
    """The cell of `runs` (one per training seed) on `group`'s tasks (or one `task`),
    `prompt` "own" or "wrong"; None when no run has such episodes."""
    key, scale = _EPISODE_KEY[metric], _SCALE[metric]
    per_seed: dict[int, float] = {}
    pooled: dict[str, list[float]] = defaultdict(list)  # task -> episodes over all seeds
    for r in runs:
        by_task: dict[str, list[float]] = defaultdict(list)
        for e in r.results(group, prompt):
            if task is None or e["task"] == task:
                by_task[e["task"]] += [scale * float(x) for x in e[key]]
        by_task = {t: v for t, v in by_task.items() if v}
        if not by_task:
            continue
        if r.seed in per_seed:
            raise ValueError(f"two evaluations of training seed {r.seed} in one cell "
                             f"({r.method}, {r.view}): the graph names each cell once")
        per_seed[r.seed] = float(np.mean([np.mean(v) for v in by_task.values()]))
        for t, v in by_task.items():
            pooled[t] += v
    if not per_seed:
        return None
    return summarize(dict(sorted(per_seed.items())), unit="seeds",
                     strata=list(pooled.values()))


def eval_tasks(runs: Iterable[EvalRun], group: str | None, prompt: str = "own") -> list[str]:
    """The tasks (maps) `runs` evaluated in `group`, in the order first seen."""
    return list(dict.fromkeys(e["task"] for r in runs for e in r.results(group, prompt)))


def _episodes(rec: dict[str, Any]) -> list[float]:
    """A TD3-BC result's episodes as 0/1 outcomes: its success rate is a fraction of
    `episodes` binary outcomes, so the counts are exact."""
    n = int(rec.get("episodes") or 0)
    if n <= 0:
        return []
    k = int(round(float(rec["success"]) * n))
    return [1.0] * k + [0.0] * (n - k)


def seed_cell(records: Sequence[dict[str, Any]]) -> CellStats | None:
    """Success (%) of TD3-BC records over their seeds: per seed the mean over the records'
    tasks (Fig. 6's mean row) or the one task's success; episodes from `_episodes`."""
    if not records:
        return None
    per_seed: dict[int, list[float]] = defaultdict(list)
    pooled: dict[str, list[float]] = defaultdict(list)
    for r in records:
        per_seed[int(r["seed"])].append(100.0 * float(r["success"]))
        pooled[r["task"]] += [100.0 * x for x in _episodes(r)]
    n_ep = sum(len(v) for v in pooled.values())
    return summarize({s: float(np.mean(v)) for s, v in sorted(per_seed.items())},
                     unit="seeds", strata=[v for v in pooled.values() if v], episodes=n_ep)


def task_cell(values: dict[str, float]) -> CellStats | None:
    """A cell over tasks (Table 4: one measurement per task)."""
    return summarize(values, unit="tasks") if values else None


def stat(cell: CellStats, fmt: str = ".2f", suffix: str = "") -> Stat:
    """A table cell from a `CellStats`: mean ± std [CI]."""
    ci = (cell.ci_low, cell.ci_high) if cell.ci_low is not None else None
    return Stat(cell.mean, cell.std, fmt, cell.n, suffix, ci)


def paper_stat(c: paper.Cell | None, fmt: str = ".2f") -> Value:
    """The paper's "mean ± std", or "–" where it prints none."""
    return Stat(c.mean, c.std, fmt) if c is not None else MISSING


def basis(cell: CellStats | None) -> str:
    """What stands behind a cell: e.g. "2 seeds, 160 ep; CI: seeds"."""
    if cell is None:
        return MISSING
    seeds = f"{len(cell.seeds)} seed{'s' if len(cell.seeds) != 1 else ''}" if cell.seeds \
        else f"{cell.n} {cell.ci_over}"
    ep = f", {cell.episodes} ep" if cell.episodes else ""
    ci = f"CI: {cell.ci_over}" if cell.ci_low is not None else "no CI (one value)"
    return f"{seeds}{ep}; {ci}"


@dataclass
class Results:
    """Every cell of the report's tables and the resolved differences (results.json)."""

    preset: str
    cells: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    aggregates: list[dict[str, Any]] = field(default_factory=list)  # `planning_aggregates`

    def add(self, table: str, cell: CellStats | None, *, method: str | None, label: str,
            view: str | None = None, tasks: str | None = None, group: str | None = None,
            metric: str = SUCCESS, paper_cell: paper.Cell | float | None = None,
            fmt: str = ".2f", suffix: str = "", missing: Value = MISSING) -> Value:
        """Record a cell (ours and the paper's number: a "mean ± std" or a bare number)
        and return what the table shows."""
        pc = paper_cell if isinstance(paper_cell, paper.Cell) or paper_cell is None \
            else paper.Cell(float(paper_cell), float("nan"))
        unit = {"success": "%", "return": "return"}.get(metric, metric)
        row: dict[str, Any] = {
            "table": table, "method": method, "label": label, "view": view, "tasks": tasks,
            "group": group, "metric": metric, "unit": unit, "preset": self.preset,
            **(cell.as_dict() if cell is not None else
               {"seeds": [], "episodes": 0, "n": 0, "mean": None, "std": None,
                "ci_low": None, "ci_high": None, "ci_over": None, "ci_method": None}),
            "paper_mean": pc.mean if pc is not None else None,
            "paper_std": pc.std if pc is not None and pc.std == pc.std else None}
        self.cells.append(row)
        return stat(cell, fmt, suffix) if cell is not None else missing

    def as_dict(self) -> dict[str, Any]:
        """results.json's content."""
        return {"preset": self.preset, "cells": self.cells, "differences": self.differences,
                "aggregates": self.aggregates,
                "notes": ["mean, std, ci_low, ci_high in the cell's unit ('%' for success "
                          "rates); std and the 95% CI are over `ci_over`: training (or "
                          "TD3-BC) seeds when a cell has two or more (ci_method 't': "
                          "Student's t), else the episodes of its one seed resampled "
                          "within each task (ci_method 'bootstrap': percentile, 10,000 "
                          "resamples, seed 0); Table 4's over tasks (t).",
                          "differences: the t interval of the per-seed differences when "
                          "both cells have the same seeds (over 'seeds (paired)'), Welch's "
                          "t when their seeds differ, the bootstrap over episodes when a "
                          "side has one seed (ci_method).",
                          "aggregates: rliable's IQM, probability of improvement and "
                          "performance profiles over training seed x task scores, with "
                          "stratified bootstrap intervals over seeds.",
                          "seeds: the seeds behind the cell; episodes: evaluation episodes "
                          "behind it (all seeds, tasks and evaluation seeds); n: the units "
                          "the std and CI are over."]}
