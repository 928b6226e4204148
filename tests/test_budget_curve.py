"""The budget curve: its table, gaps and figure from trial records, and the sweep end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtdiff.report import budget

REPO = Path(__file__).resolve().parents[1]


def _rec(kind: str, steps: int, seed: int, score: float, batch: int = 16, **groups: float
         ) -> dict:
    return {"params": {"model.kind": kind, "train.steps": steps, "train.seed": seed},
            "metrics": {"score": score, "samples": steps * float(batch),
                        **{f"score_{g}": v for g, v in groups.items()}}, "status": "finished"}


def _records(gap_small: float, gap_big: float, noise: float = 0.5) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for seed in range(4):
        for steps, gap in ((100, gap_small), (1000, gap_big)):
            base = -200.0 + rng.normal(0, 5)
            out.append(_rec("mtbc", steps, seed, base, train=base))
            d = gap + rng.normal(0, noise)
            out.append(_rec("mtdiff-p", steps, seed, base + d, train=base + d))
    return out


def test_cells_group_by_method_budget_and_group():
    recs = [*_records(0.0, 10.0), {**_rec("mtbc", 100, 9, 1.0), "status": "stopped"}]
    cells = budget.cells(recs, "cheetah-vel")
    # Grouped records: their groups, not a score over all tasks (sets may differ by method).
    assert set(cells) == {("cheetah-vel", "train", m, s)
                          for m in ("mtbc", "mtdiff-p") for s in (100, 1000)}
    assert ("x", "all", "mtbc", 5) in budget.cells([_rec("mtbc", 5, 0, 1.0)], "x")
    assert sorted(cells[("cheetah-vel", "train", "mtbc", 100)]) == [0, 1, 2, 3]  # stopped: out
    arm = budget.cells(recs, "cheetah-vel", arm="paper objective")
    assert ("cheetah-vel", "train", "mtdiff-p (paper objective)", 100) in arm


def test_table_rows_carry_seeds_interval_and_samples():
    recs = _records(0.0, 10.0)
    rows = budget.table(budget.cells(recs, "cheetah-vel"), budget.samples_of(recs, "cheetah-vel"))
    row = next(r for r in rows
               if (r["group"], r["method"], r["steps"]) == ("train", "mtbc", 1000))
    assert row["samples"] == 16_000 and len(row["seeds"]) == 4
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["std"] > 0


def test_two_suites_at_the_same_steps_keep_their_own_samples():
    """MT10 trains at 5x Cheetah-vel's batch: its 1,500 steps are 120k samples, Cheetah-vel's
    24k, and each suite's row and figure point keep their own."""
    cheetah = [_rec("mtbc", 1500, s, -240.0 + s) for s in range(3)]
    mt10 = [_rec("mtbc", 1500, s, 0.2 + s / 10, batch=80) for s in range(3)]
    cells = {**budget.cells(cheetah, "cheetah-vel"), **budget.cells(mt10, "metaworld")}
    samples = {**budget.samples_of(cheetah, "cheetah-vel"), **budget.samples_of(mt10, "metaworld")}
    rows = {r["suite"]: r["samples"] for r in budget.table(cells, samples)}
    assert rows == {"cheetah-vel": 24_000, "metaworld": 120_000}


def test_gap_resolved_only_where_it_is_and_its_growth_measured():
    recs = _records(gap_small=0.0, gap_big=10.0)
    gaps = budget.gaps(budget.cells(recs, "cheetah-vel"))
    at = {(g["group"], g["kind"], g["steps"]): g for g in gaps}
    assert not at[("train", "gap", 100)]["resolved"]  # a true gap of 0 is not claimed
    assert at[("train", "gap", 1000)]["resolved"] and at[("train", "gap", 1000)]["mean"] > 5
    grow = at[("train", "gap_change", 1000)]
    assert grow["from_steps"] == 100 and grow["resolved"] and grow["mean"] > 5
    flat = {(g["kind"], g["group"]): g for g in budget.gaps(budget.cells(
        _records(gap_small=3.0, gap_big=3.0), "cheetah-vel"))}
    assert not flat[("gap_change", "train")]["resolved"]  # the same gap: it does not grow


def test_markdown_and_figure(tmp_path):
    recs = _records(0.0, 10.0)
    cells = budget.cells(recs, "cheetah-vel")
    rows = budget.table(cells, budget.samples_of(recs, "cheetah-vel"))
    ref = [{"suite": "cheetah-vel", "group": "train", "method": "zero action", "mean": -247.5}]
    md = budget.markdown(rows, budget.gaps(cells), ref)
    assert "| cheetah-vel | train | *zero action* (reference)" in md
    assert "(mtdiff-p - mtbc) at 1000 minus at 100 steps" in md
    versus = budget.versus_reference(cells, ref)
    row = next(v for v in versus if (v["method"], v["steps"]) == ("mtdiff-p", 1000))
    assert row["mean"] == pytest.approx(np.mean(list(cells[("cheetah-vel", "train", "mtdiff-p",
                                                            1000)].values())) + 247.5)
    assert row["resolved"] and row["ci_low"] > 0  # about 57 above standing still, 4 seeds
    assert "| zero action | 4 |" in budget.markdown(rows, [], ref, versus)
    png = budget.figure(rows, tmp_path / "curve.png", ref)
    assert png.stat().st_size > 10_000


@pytest.mark.integration
@pytest.mark.slow  # a few minutes: SAC collection, then 8 trials through Tune
def test_budget_curve_sweep_end_to_end(tmp_path):
    """The entry point on a smoke Cheetah-vel dataset: a child run per cell, resumable."""
    import mlflow

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, str(REPO / "pipelines/collect.py"), "--suite",
                        "cheetah-vel", "--preset", "smoke", "--out", str(data),
                        "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    cmd = [sys.executable, str(REPO / "sweeps/budget_curve.py"), "--preset", "smoke",
           "--data", f"cheetah-vel={data}", "--budgets", "2", "4", "--seeds", "0", "1",
           "--methods", "mtdiff-p", "mtbc", "--paper-objective-at", "2",
           "--out", str(tmp_path / "curve"), "--set", "eval.max_steps=5",
           "--set", "eval.episodes=1", "--set", "train.checkpoint_every=2"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    methods = {(row["method"], row["steps"]) for row in curve["rows"]}
    assert methods == {("mtbc", 2), ("mtbc", 4), ("mtdiff-p", 2), ("mtdiff-p", 4),
                       ("mtdiff-p (paper objective)", 2)}
    groups = {(row["method"], row["group"]) for row in curve["rows"]}
    assert ("mtdiff-p", "heldout") in groups and ("mtbc", "train") in groups
    assert ("mtbc", "heldout") not in groups  # task ids: no held-out tasks
    assert {g["kind"] for g in curve["gaps"]} == {"gap", "gap_change"}
    refs = {(r["method"], r["group"]) for r in curve["reference"]}
    assert {("zero action", "train"), ("zero action", "heldout"), ("uniform random", "train"),
            ("dataset (near-optimal, mean)", "train")} <= refs
    assert "*zero action* (reference)" in (tmp_path / "curve" / "curve.md").read_text()
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    trials = [x for x in runs if x.data.tags.get("stage") == "sweep-trial"]
    assert len(trials) == 10 and all(x.info.status == "FINISHED" for x in trials)
    paper = [x for x in trials if x.data.params.get("train.loss") == "mse"]
    assert len(paper) == 2 and all(x.data.params["data.normalizer"] == "gaussian" for x in paper)
    # A rerun reads every cell back: no new child runs, the same table.
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    assert len([x for x in runs if x.data.tags.get("stage") == "sweep-trial"]) == 10
    assert json.loads((tmp_path / "curve" / "curve.json").read_text()) == curve
    # --report-only: the same table from the records, nothing trained or logged.
    only = subprocess.run([*cmd, "--report-only"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert only.returncode == 0, only.stderr[-3000:]
    assert json.loads((tmp_path / "curve" / "curve.json").read_text()) == curve


def test_reference_rows_per_group_from_a_reference_evaluation():
    def group(ret: float) -> dict:
        return {"success_mean": None, "return_mean": ret}

    doc = {"summary": {"policies": {
        "zero-action": {"all": group(-200.0), "train": group(-247.5), "heldout": group(-234.0)},
        "uniform-random": {"all": group(-300.0), "train": group(-300.0)}}},
        "dataset": {"tasks": {"a": {"near-optimal": {"mean_return": -60.0, "success_rate": None}},
                              "b": {"near-optimal": {"mean_return": -80.0, "success_rate": None}}},
                    "prompt_policy": {"c": {"return": -100.0}, "d": {"return": -120.0}}}}
    rows = {(r["method"], r["group"]): r["mean"]
            for r in budget.reference_rows(doc, "cheetah-vel", "near-optimal")}
    assert rows == {("zero action", "train"): -247.5, ("zero action", "heldout"): -234.0,
                    ("uniform random", "train"): -300.0,
                    ("dataset (near-optimal, mean)", "train"): -70.0,
                    ("prompt policy (mean)", "heldout"): -110.0}


def test_task_table_per_task_over_seeds_with_the_dataset_score():
    def rec(kind: str, seed: int, door: float, push: float) -> dict:
        return {"params": {"model.kind": kind, "train.steps": 1500, "train.seed": seed},
                "metrics": {"score": (door + push) / 2, "task.door-open-v3": door,
                            "task.push-v3": push}, "status": "finished"}

    recs = [rec("mtdiff-p", s, d, 0.0) for s, d in ((0, 0.2), (1, 0.4), (2, 0.3))]
    recs += [rec("mtbc", 0, 1.0, 1.0), {**rec("mtbc", 1, 9.0, 9.0), "status": "errored"}]
    cells = budget.task_cells(recs, "metaworld")
    assert cells[("metaworld", "door-open-v3", "mtdiff-p", 1500)] == {0: 0.2, 1: 0.4, 2: 0.3}
    assert cells[("metaworld", "push-v3", "mtbc", 1500)] == {0: 1.0}  # errored: out
    doc = {"dataset": {"tasks": {
        "door-open-v3": {"sub-optimal": {"mean_return": 1.0, "success_rate": 0.9}},
        "push-v3": {"near-optimal": {"mean_return": 1.0, "success_rate": 0.5}}}}}
    ds = budget.dataset_per_task(doc, "metaworld", "sub-optimal")
    assert ds == {("metaworld", "door-open-v3"): 0.9}
    rows = budget.task_table(cells, ds)
    door = next(r for r in rows if (r["task"], r["method"]) == ("door-open-v3", "mtdiff-p"))
    assert door["dataset"] == 0.9 and len(door["seeds"]) == 3
    assert door["ci_low"] < 0.3 < door["ci_high"]
    md = budget.task_markdown(rows)
    assert "| metaworld | door-open-v3 | mtdiff-p | 1500 | 3 | 0.300" in md
    assert md.count("\n") == len(rows) + 2
