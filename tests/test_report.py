"""The report from the experiment graph's job records: paper numbers beside ours, every
cell with mean ± std and a 95% CI (Student's t over seeds, the bootstrap over episodes with
one seed), results.json, the resolved differences, CSVs and PNGs, table by table.

Its inputs (the `run` fixture): tests/report_graph.py, whose comments compute every number
asserted here by hand. The report job, its CLI, its contracts and absent or stale inputs:
tests/test_report_inputs.py.
"""

from __future__ import annotations

import csv
import re
from typing import Any

import pytest

from mtdiff.report import build_report, paper
from tests.report_graph import _line, _results, _section


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
