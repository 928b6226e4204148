"""The report from the experiment graph's job records: paper numbers beside ours, every
cell with mean ± std and a 95% CI (Student's t over seeds, the bootstrap over episodes with
one seed), results.json, the resolved differences, CSVs, PNGs, "not run" for absent inputs.

Inputs are written in the exact formats the graph writes: job records at
`Layout.job_record(name)` with the runner's keys, evaluation JSONs as
`mtdiff.eval.stage.run` writes them (per-episode results + the summary the real
`mtdiff.eval.suites.summarize` makes), `graph.json` as the driver writes it, and Fig. 7's
sweep records through `mtdiff.report.contracts`. Episode outcomes are fixed so that
every number asserted is computed by hand in the comments.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtdiff.config import get_preset
from mtdiff.data.io import atomic_write_json
from mtdiff.experiment.jobs import Job
from mtdiff.layout import Layout
from mtdiff.report import (
    ContractError,
    GraphError,
    build_report,
    log_report_to_mlflow,
    paper,
    read_records,
    write_single_task,
    write_table2,
    write_task_count,
)

REPO = Path(__file__).resolve().parents[1]
T, F = True, False
KEY = "0123456789ab"  # every job's key in these graphs


# --- writers in the graph's formats ---------------------------------------------------------
def _record(lay: Layout, name: str, kind: str, config: dict[str, Any],
            result: dict[str, Any]) -> None:
    """A finished job's record, with the keys `mtdiff.experiment.execute.execute` writes."""
    atomic_write_json(lay.job_record(name), {
        "record": True, "name": name, "kind": kind, "key": KEY, "state": "done",
        "config": config, "result": result, "seconds": 1.0, "node": "node-a", "host": "vm",
        "finished": "2026-01-01 00:00:00", "code_version": "test"})


def _graph(lay: Layout, names: list[str]) -> None:
    """graph.json as the driver writes it (the report job last)."""
    atomic_write_json(lay.graph, {"seconds": 9.0, "jobs": [
        {"name": n, "kind": n.split("/")[0], "deps": [], "resources": {}, "config": {},
         "key": KEY, "state": "done" if lay.job_record(n).exists() else "failed",
         "seconds": 1.0, "node": "node-a", "record": str(lay.job_record(n)),
         "log": str(lay.job_log(n)), "error": ""} for n in [*names, "report"]]})


def _episodes(task: str, outcomes: list[bool], returns: list[float], group: str,
              prompt: str = "own", seed: int = 0) -> dict[str, Any]:
    """One (task, eval seed) result as `mtdiff.eval.suites.run_job` returns it."""
    n = len(outcomes)
    return {"task": task, "seed": seed, "prompt_task": task, "episodes": n,
            "success": outcomes, "returns": returns, "lengths": [10] * n,
            "first_success": [-1] * n, "env_steps": 10 * n, "plan_seconds": 0.1,
            "seconds": 0.2, "group": group, "prompt": prompt}


def _evaluate(lay: Layout, suite: str, method: str, view: str | None, seed: int,
              results: list[dict[str, Any]]) -> str:
    """An evaluate job: its evaluation JSON (as `eval.stage.run`) and its record (as
    `Evaluation.to_record`); returns the job name."""
    from mtdiff.eval.suites import summarize as eval_summarize

    cell = "/".join([suite, method, *([view] if view else []), f"s{seed}"])
    name = f"evaluate/{cell}"
    out = lay.out / "eval" / f"{suite}-train-{method}-{seed:012x}-abcd1234"
    own = [r for r in results if r["prompt"] == "own"]
    summary: dict[str, Any] = {"suite": suite, "checkpoint": str(out / "ckpt"),
                               "wall_seconds": 1.0, "diffusion": {"sampler": "ddim"},
                               "eval": {"episodes": 4, "seeds": [0], "stop_on_success": True},
                               "all": eval_summarize(own)}
    for group in ("train", "unseen", "heldout"):
        if any(r["group"] == group for r in own):
            summary[group] = eval_summarize([r for r in own if r["group"] == group])
    if any(r["prompt"] == "wrong" for r in results):
        summary["unseen_wrong_prompt"] = eval_summarize(
            [r for r in results if r["prompt"] == "wrong"])
    summary["env_steps_per_s"] = 10.0
    eval_file = atomic_write_json(out / f"eval-{suite}.json",
                                  {"summary": summary, "episodes": results})
    config = {"suite": suite, "method": method, "view": view, "seed": seed}
    groups = {g: summary[g]["success_mean"] for g in
              ("all", "train", "unseen", "unseen_wrong_prompt", "heldout") if g in summary}
    _record(lay, name, "evaluate", config, {
        "eval_file": str(eval_file), "checkpoint": summary["checkpoint"], "success": groups,
        "env_steps_per_s": 10.0, **config, "outputs": [str(eval_file)]})
    return name


def _td3bc(lay: Layout, task: str, method: str, seed: int, successes: int, seen: bool,
           **more: Any) -> str:
    """An offline (TD3-BC) job's record, the keys of `offline.stage.td3bc_cell`; 10
    evaluation episodes, `successes` of them successful."""
    name = f"offline/{task}/{method}/s{seed}"
    res = {"task": task, "seed": seed, "method": method, "seen": seen, **more,
           "success": successes / 10, "mean_return": 100.0 * successes,
           "curve": [{"step": 10.0, "success_rate": successes / 10, "mean_return": 1.0}],
           "seconds": 1.0, "transitions": 400, "episodes": 10, "preset": "local",
           "agent": None, "outputs": []}
    _record(lay, name, "offline", {"task": task, "method": method, "seed": seed, **more}, res)
    return name


# Meta-World episodes (4 per task, eval seed 0). MTDiff-P near-optimal, per training seed:
#   s0: reach 2/4, push 1/4 -> (50 + 25) / 2 = 37.5 %;  s1: reach 3/4, push 2/4 -> 62.5 %
#   mean 50.00, sample std |62.5 - 37.5| / sqrt(2) = 17.68, standard error 12.5; CI over
#   2 seeds (t, 1 df: t_0.975 = 12.706) 50 ± 158.83 = [-108.83, 208.83]
# MTDiff-P-onehot, seed 0 only: reach 1/4, push 3/4 -> 50 %; over its 8 episodes: std
#   of [1,0,0,0,1,1,1,0] x 100 = 53.45; CI [25, 75] (stratified bootstrap, see
#   test_one_seed_ci_over_episodes).
# U-Net: 0 everywhere -> Table 3's MTDiff-P > U-Net difference is 37.5 and 62.5 paired
#   by seed: the same t interval [-108.83, 208.83], not resolved (2 seeds cannot).
MW = {("mtdiff-p", 0): {"reach-v3": [T, T, F, F], "push-v3": [T, F, F, F]},
      ("mtdiff-p", 1): {"reach-v3": [T, T, T, F], "push-v3": [T, T, F, F]},
      ("mtdiff-p-unet", 0): {"reach-v3": [F] * 4, "push-v3": [F] * 4},
      ("mtdiff-p-unet", 1): {"reach-v3": [F] * 4, "push-v3": [F] * 4},
      ("mtdiff-p-onehot", 0): {"reach-v3": [T, F, F, F], "push-v3": [T, T, T, F]}}
# MTDiff-P's reach-v3 returns: s0 mean 25, s1 mean 45 -> 35.0 ± 14.1, se 10: [-92.1, 162.1]
RETURNS = {0: [10.0, 20.0, 30.0, 40.0], 1: [30.0, 40.0, 50.0, 60.0]}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A reproduction folder: a tiny graph of every kind of record the report reads."""
    lay = Layout.at(tmp_path / "repro-local")
    names: list[str] = []
    _record(lay, "collect/metaworld", "collect", {"suite": "metaworld"},
            {"dataset": str(lay.out / "data" / "metaworld-abc"), "hash": "abc",
             "tasks": ["push-v3", "reach-v3"], "transitions": 4000, "outputs": []})
    names.append("collect/metaworld")
    for (method, seed), per_task in MW.items():
        names.append(_evaluate(lay, "metaworld", method, "near-optimal", seed, [
            _episodes(t, o, RETURNS[seed] if t == "reach-v3" and method == "mtdiff-p"
                      else [0.0] * 4, "train") for t, o in per_task.items()]))
    names.append("evaluate/metaworld/mtdiff-p-onehot/near-optimal/s1")  # failed: no record
    # Maze2D: own prompt 3/4 on unseen-0 for both seeds, wrong prompt 0/4 -> resolved.
    for method in ("mtdiff-p", "promptdt"):
        for seed in (0, 1):
            res = [_episodes(m, [T, T, F, F], [1.0] * 4, "train") for m in ("train-0", "train-1")]
            res += [_episodes("unseen-0", [T, T, T, F] if method == "mtdiff-p" else [F] * 4,
                              [1.0] * 4, "unseen"),
                    _episodes("unseen-0", [F] * 4, [0.0] * 4, "unseen", prompt="wrong")]
            names.append(_evaluate(lay, "maze2d", method, None, seed, res))
            import matplotlib.pyplot as plt

            plt.imsave(lay.out / "eval" / f"maze2d-train-{method}-{seed:012x}-abcd1234" /
                       "maze2d-paths.png", np.full((30, 40, 3), 0.5 if seed else 0.8))
    # Cheetah-vel: training tasks return -30 / -28 (MTDiff-P), -40 / -36 (PromptDT).
    for method, (r0, r1) in (("mtdiff-p", (-30.0, -28.0)), ("promptdt", (-40.0, -36.0))):
        for seed, r in ((0, r0), (1, r1)):
            names.append(_evaluate(lay, "cheetah-vel", method, None, seed, [
                _episodes("cheetah-vel-0", [F] * 4, [r] * 4, "train"),
                _episodes("cheetah-vel-2", [F] * 4, [r - 10] * 4, "heldout")]))
    # TD3-BC: box-close unseen, reach seen; successes out of 10 per seed.
    table2 = {"original": (2, 4), "s4rl": (5, 5), "rad": (3, 3), "mtdiff-s": (6, 8)}
    for task, seen in (("box-close-v3", False), ("reach-v3", True)):
        for m, per_seed in table2.items():
            for seed, k in enumerate(per_seed):
                names.append(_td3bc(lay, task, m, seed, k, seen))
    for seed, k in enumerate((1, 3)):
        names.append(_td3bc(lay, "reach-v3", "mtdiff-s-single", seed, k, True))
    for task in ("box-close-v3", "reach-v3"):
        name = f"quality/{task}"
        _record(lay, name, "quality", {"task": task}, {"records": [
            {"task": task, "method": m, "dynamics_error": e, "l2_distance": 0.4,
             "samples": 8, "unstable": 0, "preset": "local"}
            for m, e in (("mtdiff-s", 0.02), ("rad", 0.06), ("s4rl", 0.0001))],
            "plot": "", "outputs": []})
        names.append(name)
    # Fig. 7: the graph's 10-task MTDiff-S; a sweep wrote 20 tasks into the contract file
    names.append(_td3bc(lay, "coffee-push-v3", "mtdiff-s-tasks-10", 0, 4, True, num_tasks=10))
    write_task_count(lay.out, [{"num_tasks": 20, "seed": s, "success": v, "task":
                                "coffee-push-v3"} for s, v in ((0, 0.5), (1, 0.7))])
    _graph(lay, names)
    return lay.out


def _section(md: str, title: str) -> str:
    """The Markdown section whose heading starts with `title`."""
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _line(md: str, start: str) -> str:
    found = [ln for ln in md.splitlines() if ln.startswith(start)]
    assert found, f"no line starting with {start!r}"
    return found[0]


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "report" / "results.json").read_text())


# --- the report -------------------------------------------------------------------------
def test_table1_over_seeds_and_episodes(run):
    md = build_report(run, preset="local").read_text()
    t1 = _section(md, "Table 1")
    row = _line(t1, "| MTDiff-P |")
    assert row == ("| MTDiff-P | 59.53 ± 1.12 | 50.00 ± 17.68 [-108.83, 208.83] | 2 seeds, 16 ep; "
                   "CI: seeds | 48.67 ± 1.32 | – | – | 2 |")
    assert _line(t1, "| MTDiff-P-onehot |") == (
        "| MTDiff-P-onehot | 61.32 ± 0.89 | 50.00 ± 53.45 [25.00, 75.00] | 1 seed, 8 ep; "
        "CI: episodes | 48.94 ± 0.95 | – | – | 2 |")
    # a method the graph did not evaluate: the paper's numbers, "–" for ours
    assert _line(t1, "| MTBC |") == "| MTBC | 60.39 ± 0.86 | – | – | 34.53 ± 1.25 | – | – | – |"
    assert _line(t1, "| CARE [53] (online) |").count("–") == 6
    assert not [ln for ln in t1.splitlines() if ln.startswith("| MTDiff-P (U-Net) |")]
    # the failed job is named; its cell is absent
    assert "`evaluate/metaworld/mtdiff-p-onehot/near-optimal/s1`" in _section(md, "Inputs")
    with open(run / "report" / "table1.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    p = rows["MTDiff-P"]
    assert float(p["near_optimal_ours_mean"]) == 50.0
    assert float(p["near_optimal_ours_ci_low"]) == pytest.approx(-108.827559)
    assert float(p["near_optimal_paper_mean"]) == 59.53
    assert rows["MTBC"]["near_optimal_ours_mean"] == ""
    assert len(rows) == 9  # the paper's rows; U-Net is Table 3's
    # per-task success (50 and 75 per seed) and Table 6 (returns of reach-v3: 25 and 45)
    assert "| reach-v3 | 62.50 ± 17.68 [-96.33, 221.33] |" in md
    row6 = _line(_section(md, "Table 6"), "| reach-v3 |")
    assert row6 == "| reach-v3 | 4144.2 ± 645.4 | 35.0 ± 14.1 [-92.1, 162.1] | 966.4 ± 842.9 | – |"
    assert "not in the paper's table" in _line(_section(md, "Table 6"), "| box-close-v3 |")


def test_results_json(run):
    build_report(run, preset="local")
    res = _results(run)
    keys = {"table", "method", "label", "view", "tasks", "group", "metric", "unit", "seeds",
            "episodes", "n", "mean", "std", "ci_low", "ci_high", "ci_over", "ci_method",
            "paper_mean", "paper_std", "preset"}
    assert res["cells"] and all(set(c) == keys for c in res["cells"])
    [p] = [c for c in res["cells"] if c["table"] == "table1" and c["method"] == "mtdiff-p"
           and c["view"] == "near-optimal"]
    assert p == {"table": "table1", "method": "mtdiff-p", "label": "MTDiff-P",
                 "view": "near-optimal", "tasks": "2", "group": "train", "metric": "success",
                 "unit": "%", "seeds": [0, 1], "episodes": 16, "n": 2, "mean": 50.0,
                 "std": pytest.approx(17.677670, abs=1e-6), "ci_low": -108.827559,
                 "ci_high": 208.827559, "ci_over": "seeds", "ci_method": "t",
                 "paper_mean": 59.53, "paper_std": 1.12, "preset": "local"}
    [one] = [c for c in res["cells"] if c["table"] == "table1"
             and c["method"] == "mtdiff-p-onehot" and c["view"] == "near-optimal"]
    assert (one["ci_over"], one["ci_method"], one["seeds"], one["n"], one["ci_low"]) == (
        "episodes", "bootstrap", [0], 8, 25.0)
    [bc] = [c for c in res["cells"] if c["table"] == "table1" and c["method"] == "mtbc"
            and c["view"] == "sub-optimal"]
    assert bc["mean"] is None and bc["seeds"] == [] and bc["paper_mean"] == 34.53
    assert {c["table"] for c in res["cells"]} >= {
        "table1", "table3", "table5", "table6", "success_per_task", "maze2d",
        "maze2d_per_map", "table2", "table4", "fig6", "fig7"}
    [t3] = [d for d in res["differences"] if d["table"] == "Table 3"]
    assert t3 == {"table": "Table 3", "column": "near-optimal", "a": "MTDiff-P",
                  "b": "MTDiff-P (U-Net)", "paper": "59.53 vs 55.67", "verdict": "not resolved",
                  "diff_mean": 50.0, "ci_low": -108.827559, "ci_high": 208.827559,
                  "over": "seeds (paired)", "ci_method": "t"}


def test_resolved_differences(run):
    md = build_report(run, preset="local").read_text()
    t3 = _section(md, "Table 3")
    assert "| MTDiff-P (U-Net) | 55.67 ± 1.27 | 0.00 ± 0.00 [0.00, 0.00] |" in t3
    assert ("- Table 3, near-optimal: paper MTDiff-P > MTDiff-P (U-Net) (59.53 vs 55.67); ours "
            "+50.00 [-108.83, +208.83] over seeds (paired), t: **not resolved**") in t3
    # MTDiff-P-onehot (1 seed) vs MTDiff-P (2 seeds): over episodes, equal means
    assert re.search(r"paper MTDiff-P-onehot > MTDiff-P \(61\.32 vs 59\.53\); ours \+0\.00 "
                     r"\[-\d+\.\d\d, \+\d+\.\d\d\] over episodes, bootstrap: \*\*not resolved\*\*",
                     _section(md, "Table 1"))
    maze = _section(md, "Fig. 5")
    assert "unseen maps, MTDiff-P: paper own prompt > wrong prompt" in maze
    assert ("ours +75.00 [+75.00, +75.00] over seeds (paired), t: **holds**" in
            _line(maze, "- Maze2D, unseen maps, MTDiff-P:"))
    assert "**not resolved**" in _line(maze, "- Maze2D, unseen maps, PromptDT:")  # 0 vs 0
    assert "**holds**" in _line(maze, "- Maze2D, unseen maps, own prompt:")  # P 75 vs DT 0


def test_maze_and_table5(run):
    md = build_report(run, preset="local").read_text()
    maze = _section(md, "Fig. 5")
    assert _line(maze, "| MTDiff-P |").startswith(
        "| MTDiff-P | 50.00 ± 0.00 [50.00, 50.00] | 2 seeds, 16 ep; CI: seeds | 75.00 ± 0.00")
    assert _line(maze, "| PromptDT |")  # the paper's label without a registry entry
    assert "![](maze2d_paths.png)" in maze and "| unseen-0 | unseen maps, wrong prompt |" in maze
    for png in ("fig5_maze2d", "maze2d_paths", "success_per_task"):
        assert (run / "report" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t5 = _section(md, "Table 5")
    # training tasks: MTDiff-P -30, -28 -> -29.00 ± 1.41, se 1, t (1 df) ± 12.71; held-out
    # 10 lower
    assert _line(t5, "| MTDiff-P |").startswith(
        "| MTDiff-P | -29.09 ± 0.31 | -29.00 ± 1.41 [-41.71, -16.29] | -39.00 ± 1.41 "
        "[-51.71, -26.29] | 602.17 ± 1.68 | not run | not run |")
    assert paper.TABLE5_NOTE in t5
    # MTDiff-P - PromptDT per seed: 10, 8 -> 9 ± 12.71 (s = sqrt(2), se = 1): not resolved
    assert ("ours +9.00 [-3.71, +21.71] over seeds (paired), t: **not resolved**"
            in _line(t5, "- Table 5, cheetah-vel, train tasks:"))


def test_aggregates_in_report(run):
    """rliable's aggregates over seed x task scores, hand-computed from MW and Cheetah-vel."""
    md = build_report(run, preset="local").read_text()
    agg = {a["name"]: a for a in _results(run)["aggregates"]}
    assert set(agg) == {"table1_near-optimal", "table5_cheetah-vel_train",
                        "table5_cheetah-vel_heldout"}
    mw = agg["table1_near-optimal"]
    assert list(mw["methods"])[0] == "mtdiff-p"  # first, then in graph order
    assert set(mw["methods"]) == {"mtdiff-p", "mtdiff-p-unet", "mtdiff-p-onehot"}
    p = mw["methods"]["mtdiff-p"]
    # scores reach 50, 75 and push 25, 50 -> IQM drops int(4 / 4) = 1 at each end: 50
    assert (p["seeds"], p["tasks"], p["scores"], p["iqm"]["value"]) == ([0, 1], 2, 4, 50.0)
    assert p["iqm"]["ci_low"] <= 50.0 <= p["iqm"]["ci_high"]
    # one seed per task: no interval
    assert mw["methods"]["mtdiff-p-onehot"]["iqm"] == {"value": 50.0, "ci_low": None,
                                                       "ci_high": None, "ci_method": None}
    poi = {(e["x"], e["y"]): e for e in mw["probability_of_improvement"]}
    assert len(poi) == 6
    # every MTDiff-P seed beats every U-Net seed on both tasks, in every resample too
    assert (poi[("mtdiff-p", "mtdiff-p-unet")]["value"], poi[("mtdiff-p", "mtdiff-p-unet")]
            ["ci_low"], poi[("mtdiff-p-unet", "mtdiff-p")]["ci_high"]) == (1.0, 1.0, 0.0)
    # vs one-hot (25 on reach, 75 on push): reach 1, push 0 -> 0.5; one-hot has one seed
    assert poi[("mtdiff-p", "mtdiff-p-onehot")]["value"] == 0.5
    assert poi[("mtdiff-p", "mtdiff-p-onehot")]["ci_low"] is None
    prof = mw["profile"]
    assert prof["taus"][0] == 0.0 and prof["taus"][50] == 50.0 and len(prof["taus"]) == 101
    assert prof["methods"]["mtdiff-p"]["fraction"][0] == 1.0  # every score > 0
    assert prof["methods"]["mtdiff-p"]["fraction"][50] == 0.25  # 75 alone > 50
    ch = agg["table5_cheetah-vel_train"]
    assert ch["methods"]["mtdiff-p"]["iqm"]["value"] == -29.0  # (-30 - 28) / 2
    assert poi_value(ch, "mtdiff-p", "promptdt") == 1.0
    sec = _section(md, "Aggregates")
    assert "![](performance_profiles.png)" in sec
    row = _line(sec, "| MTDiff-P | 50.00 [")
    assert re.match(r"\| MTDiff-P \| 50\.00 \[\d+\.\d\d, \d+\.\d\d\] \| 2 seeds x 2 tasks "
                    r"\(4\) \| – \|", row)
    assert "| 1.00 [1.00, 1.00] |" in row and "| 0.50 |" in row  # vs U-Net, vs one-hot
    assert (run / "report" / "performance_profiles.png").read_bytes()[:8] == \
        b"\x89PNG\r\n\x1a\n"


def poi_value(entry: dict[str, Any], x: str, y: str) -> float:
    [e] = [e for e in entry["probability_of_improvement"] if (e["x"], e["y"]) == (x, y)]
    return e["value"]


def test_offline_tables(run):
    md = build_report(run, preset="local").read_text()
    t2 = _section(md, "Table 2")
    # the smoke test's shape: paper's Original, then ours with a ±
    assert re.search(r"\| box-close-v3 \| unseen \| 23\.46 ± 7\.11 \| \d+\.\d\d ± ", t2)
    row = _line(t2, "| box-close-v3 | unseen |")
    # Original 2/10, 4/10 -> 30.00 ± 14.14, se 10, t (1 df) ± 127.06; MTDiff-S 60, 80 ->
    # ↑ 133%; S4RL 5/10 twice: s = 0, [50, 50]
    assert "| 30.00 ± 14.14 [-97.06, 157.06] |" in row
    assert "| 70.00 ± 14.14 [-57.06, 197.06] (↑ 133%) |" in row
    assert "| 50.00 ± 0.00 [50.00, 50.00] (↑" in row
    assert "2 seeds, 20 ep; CI: seeds" in row and "not legible" in row
    assert "| MTDiff-S | 0.0174 | 0.02 ± 0 [0.02, 0.02] |" in _section(md, "Table 4")
    f6 = _section(md, "Fig. 6")
    assert "| reach-v3 | 30.00 ± 14.14 [-97.06, 157.06] | 20.00 ± 14.14 [-107.06, 147.06] |" \
        in f6
    assert "fig6_single_task.png" in md and "_not run_" not in f6
    f7 = _section(md, "Fig. 7")  # the graph's 10 tasks (1 seed, over episodes), the sweep's 20
    assert "| coffee-push-v3 | 10 | 40.00 ± 51.64 [10.00, 70.00] | 1 seed, 10 ep; CI: episodes " \
           "| graph |" in f7
    assert "| coffee-push-v3 | 20 | 60.00 ± 14.14 [-67.06, 187.06] | 2 seeds; CI: seeds " \
           "| sweep |" in f7


def test_report_job_writes_contracts_and_report(run):
    """The graph's report job (`mtdiff.report.stage.run`), as the runner calls it."""
    from mtdiff.experiment.execute import job_inputs
    from mtdiff.report.stage import run as report

    names = [j["name"] for j in json.loads((run / "graph.json").read_text())["jobs"]][:-1]
    job = Job("report", "report", get_preset("smoke"), {}, deps=names, always=True,
              params={"root": str(run), "graph": names})
    res = report(job.cfg, *job_inputs(job, {})).to_record()
    assert res["results"] == str(run / "report" / "results.json")
    assert json.loads(Path(res["results"]).read_text())["preset"] == "smoke"
    t2 = read_records("table2", run)
    assert len(t2) == 16 and {r["task"] for r in t2} == {"box-close-v3", "reach-v3"}
    assert len(read_records("quality", run)) == 6
    # Fig. 7: the graph's record merged into the sweep's file, not read back as a sweep's
    counts = read_records("task_count", run)
    assert sorted((r["num_tasks"], str(r.get("source"))) for r in counts) == [
        (10, "graph"), (20, "None"), (20, "None")]
    md = Path(res["report"]).read_text()
    assert md.count("| coffee-push-v3 | 10 |") == 1


def test_missing_inputs_say_not_run(tmp_path):
    lay = Layout.at(tmp_path / "run")
    lay.out.mkdir()
    with pytest.raises(GraphError, match="full_repro"):
        build_report(lay.out)
    _graph(lay, ["evaluate/metaworld/mtdiff-p/near-optimal/s0"])  # never finished
    md = build_report(lay.out).read_text()
    # Table 1, Maze2D, Table 5, Table 6, state use, aggregates, Table 2, Table 4, Figs. 6, 7
    assert md.count("_not run_") == 10
    assert "_not run_: no Meta-World, Cheetah-vel or Ant-dir" in _section(md, "Aggregates")
    assert "59.53 ± 1.12" in md and "23.46 ± 7.11" in md  # the paper's numbers stay
    assert "| MTDiff-P | -29.09 ± 0.31 | not run |" in md
    f6 = _section(md, "Fig. 6")
    assert "_not run_: no single-task augmentation results" in f6 and paper.FIG6_NOTE in f6
    assert "preset: `unknown`" in md
    res = _results(lay.out)
    assert all(c["mean"] is None for c in res["cells"]) and res["differences"] == []
    with pytest.raises(FileNotFoundError, match="full_repro"):
        build_report(tmp_path / "absent", graph=[])


def test_unreadable_evaluation_is_a_problem_not_a_crash(run):
    eval_file = json.loads(Layout.at(run).job_record(
        "evaluate/maze2d/promptdt/s1").read_text())["result"]["eval_file"]
    Path(eval_file).write_text("{not json")
    md = build_report(run).read_text()
    assert "- problem: evaluate/maze2d/promptdt/s1: evaluation" in md
    assert "1 seed, 8 ep; CI: episodes" in _line(_section(md, "Fig. 5"), "| PromptDT |")
    assert "preset: `local`" in md  # named by the TD3-BC records


def test_stale_records_are_not_read(run):
    """A record made under another config (its key is not the graph's) or whose outputs
    are gone: listed, its cell left out."""
    keys = {j["name"]: j["key"] for j in json.loads((run / "graph.json").read_text())["jobs"]}
    keys.pop("report")
    keys["evaluate/metaworld/mtdiff-p/near-optimal/s1"] = "another-key0"
    eval_file = json.loads(Layout.at(run).job_record("evaluate/metaworld/mtdiff-p-unet/"
                                                    "near-optimal/s0").read_text())
    Path(eval_file["result"]["eval_file"]).unlink()
    md = build_report(run, graph=keys).read_text()
    stale = _line(md, "- **2 jobs with a stale record**")
    assert "`evaluate/metaworld/mtdiff-p/near-optimal/s1`" in stale
    assert "`evaluate/metaworld/mtdiff-p-unet/near-optimal/s0`" in stale
    # MTDiff-P now rests on seed 0 alone (37.5 %): over its 8 episodes
    assert "| MTDiff-P | 59.53 ± 1.12 | 37.50 ± 51.75 " in md and "1 seed, 8 ep; CI: episodes" in md
    assert "- problem:" not in md


def test_moved_run_folder_still_reads(run, tmp_path):
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.move(str(run), moved)
    md = build_report(moved, preset="local").read_text()
    assert "50.00 ± 17.68 [-108.83, 208.83]" in md and "- problem:" not in md
    assert (moved / "report" / "maze2d_paths.png").exists()


def test_cli(run, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("report_cli", REPO / "pipelines/report.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--run", str(run), "--dest", str(tmp_path / "rep")]) == 0
    assert f"report: {tmp_path / 'rep' / 'report.md'}" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "preset: `local`" in md and (tmp_path / "rep" / "results.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--run", str(empty)]) == 2
    assert "no job graph" in capsys.readouterr().err
    assert cli.main(["--run", str(tmp_path / "absent")]) == 2


def test_contracts_validate_and_merge(tmp_path):
    row = {"task": "coffee-push-v3", "seen": True, "method": "rad", "seed": 0, "success": 0.5}
    with pytest.raises(ContractError, match=r"rate in \[0, 1\]"):
        write_table2(tmp_path, [{**row, "success": 45.0}])
    with pytest.raises(ContractError, match="not one of"):
        write_table2(tmp_path, [{**row, "method": "synther"}])
    with pytest.raises(ContractError, match="must be a bool"):
        write_table2(tmp_path, [{**row, "seen": 1}])
    write_table2(tmp_path, [row, {**row, "seed": 1}])
    write_table2(tmp_path, [{**row, "seed": 1, "success": 0.75, "preset": "local"}], merge=True)
    recs = read_records("table2", tmp_path)
    assert [(r["seed"], r["success"]) for r in recs] == [(0, 0.5), (1, 0.75)]
    assert recs[1]["preset"] == "local"  # extra keys are kept
    assert not list((tmp_path / "offline").glob(".*.tmp"))
    with pytest.raises(ContractError, match="num_tasks"):
        write_task_count(tmp_path, [{"num_tasks": 0, "seed": 0, "success": 0.1, "task": "a"}])
    single = {"task": "coffee-push-v3", "method": "rad", "seed": 0, "success": 0.5}
    allowed = r"'rad' is not one of \('original', 'mtdiff-s-single', 'mtdiff-s'\)"
    with pytest.raises(ContractError, match=allowed):
        write_single_task(tmp_path, [single])
    (tmp_path / "offline" / "single_task.json").write_text(json.dumps([single]))
    with pytest.raises(ContractError, match=allowed):
        read_records("single_task", tmp_path)


def test_paper_data():
    from mtdiff.envs.metaworld import ALL_TASKS

    assert len(paper.TABLE6) == 49 and set(paper.TABLE6) | set(paper.TABLE6_MISSING) == \
        set(ALL_TASKS)
    assert paper.TABLE6["reach-v3"][0] == paper.Cell(4144.2, 645.4)
    assert {r.task for r in paper.TABLE2} <= set(ALL_TASKS)
    assert [r[0] for r in paper.TABLE1] == ["CARE [53] (online)", "PaCo [56] (online)", "MTDT",
                                            "PromptDT", "MTBC", "MTCQL", "MTIQL", "MTDiff-P",
                                            "MTDiff-P-onehot"]
    assert paper.TABLE1[7][1:] == (paper.Cell(59.53, 1.12), paper.Cell(48.67, 1.32), "mtdiff-p")
    assert paper.TABLE3[1][1:] == (paper.Cell(55.67, 1.27), paper.Cell(47.42, 0.74),
                                   "mtdiff-p-unet")
    assert [r[1:3] for r in paper.TABLE5] == [(paper.Cell(-29.09, 0.31), paper.Cell(602.17, 1.68)),
                                              (paper.Cell(-34.43, 2.33), paper.Cell(409.81, 9.69))]


@pytest.mark.slow
def test_log_report_to_real_mlflow(run, tmp_path):
    """Against a real SQLite store (slow only because importing mlflow is)."""
    import mlflow

    rep = build_report(run, preset="local")
    assert log_report_to_mlflow(rep.parent) is False  # no active run: nothing logged
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("report", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp) as active:
        assert log_report_to_mlflow(rep)  # report.md's path works too
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(active.info.run_id, "report")}
    assert {"report/report.md", "report/results.json", "report/table1.csv",
            "report/fig5_maze2d.png"} <= names
