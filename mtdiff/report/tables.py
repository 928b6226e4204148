"""Tables shaped like the paper's Tables 1, 2, 4, 6 and the numbers behind Figs. 5, 6, 7.

Success rates are in percent (ours: mean ± std over seeds, the paper's convention);
returns are per-episode Meta-World returns. "–" is a cell nobody produced (ours not run,
or empty in the paper); "not legible" is a paper cell our copy lost (`paper.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtdiff.report import paper
from mtdiff.report.contracts import SINGLE_METHODS
from mtdiff.report.sources import EvalRun, task_set_name
from mtdiff.report.table import MISSING, NOT_LEGIBLE, Stat, Table, Value

VIEWS = ("near-optimal", "sub-optimal")
METHOD_LABELS = {"original": "Original", "s4rl": "S4RL", "rad": "RAD", "mtdiff-s": "MTDiff-S",
                 "mtdiff-s-single": "MTDiff-S-single"}


def _record_presets(records: Sequence[dict[str, Any]], preset: str) -> str:
    """The presets named by contract records (`preset` where a record names none)."""
    return ", ".join(sorted({str(r.get("preset", preset)) for r in records}) or [preset])


def _pct(mean: float, std: float, n: int | None = None, suffix: str = "") -> Stat:
    return Stat(100.0 * mean, 100.0 * std, ".2f", n, suffix)


def _paper(c: paper.Cell | None, fmt: str = ".2f") -> Value:
    return Stat(c.mean, c.std, fmt) if c is not None else MISSING


def _provenance(runs: Sequence[EvalRun]) -> str:
    """E.g. "local (from checkpoint): mtdiff-p (near-optimal) <- runs/x/eval/...json"."""
    return "; ".join(f"{r.label}: preset `{r.preset}` ({r.preset_source}), "
                     f"`{r.path}`" for r in runs)


def _presets(runs: Sequence[EvalRun]) -> str:
    return ", ".join(sorted({r.preset for r in runs}))


def _view_note(runs: Sequence[EvalRun]) -> list[str]:
    if any(r.view_assumed for r in runs):
        return ["A view marked 'assumed' is the preset's default dataset view: the "
                "checkpoint's metadata could not be read."]
    return []


def table1(runs: Sequence[EvalRun]) -> Table:
    """Table 1: MT50-rand success (%), the paper's methods, ours for MTDiff-P(-onehot).

    `runs` are Meta-World evaluations, at most one per (kind, view): the newest.
    """
    by_key = {(r.kind, r.view): r for r in runs}
    rows: list[list[Value]] = []
    used = []
    for label, near, sub, kind in paper.TABLE1:
        ours: dict[str, Value] = {}
        info: list[EvalRun] = []
        for view in VIEWS:
            r = by_key.get((kind, view)) if kind else None
            if r is not None:
                g = r.group
                ours[view] = _pct(g["success_mean"], g["success_std"], len(r.seeds))
                info.append(r)
        used += info
        presets = ", ".join(sorted({r.preset for r in info})) or MISSING
        tasks = ", ".join(sorted({task_set_name(list(r.group["tasks"])) for r in info}))
        budget = ", ".join(sorted({f"{len(r.seeds)} x {r.episodes_per_task}" for r in info}))
        rows.append([label, _paper(near), ours.get("near-optimal", MISSING), _paper(sub),
                     ours.get("sub-optimal", MISSING), presets, tasks or MISSING,
                     budget or MISSING])
    unknown = [r for r in runs if r.view not in VIEWS]
    for r in unknown:  # a view we could not determine: its own row, never a wrong column
        g = r.group
        rows.append([f"{r.kind} (ours, view unknown)", MISSING, _pct(g["success_mean"],
                     g["success_std"], len(r.seeds)), MISSING, MISSING, r.preset,
                     task_set_name(list(g["tasks"])), f"{len(r.seeds)} x {r.episodes_per_task}"])
    return Table(
        "table1", "Table 1: average success rate (%) on Meta-World MT50-rand",
        ["Method", "Near-optimal (paper)", "Near-optimal (ours)", "Sub-optimal (paper)",
         "Sub-optimal (ours)", "Ours: preset", "Ours: tasks", "Ours: seeds x episodes"],
        rows,
        meta={"paper": "MT50-rand (50 tasks), 3 seeds x 50 episodes per task",
              "ours": _provenance(used + unknown) or "not run"},
        stat_columns=("Near-optimal (paper)", "Near-optimal (ours)", "Sub-optimal (paper)",
                      "Sub-optimal (ours)"),
        notes=["Ours: success over the tasks the model was trained on, mean ± std over "
               "evaluation seeds (the per-seed mean over tasks, as the paper).",
               "– : not run here (the baselines are not part of this reproduction) or "
               "not reported by the paper.", *_view_note(used + unknown)])


def per_task_success(runs: Sequence[EvalRun]) -> Table:
    """Our success (%) per Meta-World task, one column per evaluated model (kind, view)."""
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in r.summary["all"]["tasks"] if t not in tasks]
    rows: list[list[Value]] = []
    for t in tasks:
        row: list[Value] = [t]
        for r in runs:
            v = r.summary["all"]["tasks"].get(t)
            row.append(_pct(v["success_mean"], v["success_std"], len(r.seeds)) if v else MISSING)
        rows.append(row)
    return Table("success_per_task", "Per-task success rate (%), ours (no per-task numbers "
                 "in the paper)", ["Task", *[r.label for r in runs]], rows,
                 meta={"ours": _provenance(runs)}, preset=_presets(runs),
                 notes=["Mean ± std over evaluation seeds.", *_view_note(runs)])


def episode_returns(run: EvalRun) -> dict[str, Stat]:
    """Per task: return mean ± std over all its episodes (own prompt, all seeds), as Table 6.

    Falls back to the summary's seed-level numbers when the JSON has no episodes.
    """
    pooled: dict[str, list[float]] = defaultdict(list)
    for e in run.episodes:
        if e.get("prompt", "own") == "own":
            pooled[e["task"]] += [float(x) for x in e["returns"]]
    out = {t: Stat(float(np.mean(v)), float(np.std(v)), ".1f", len(v))
           for t, v in pooled.items() if v}
    for t, v in run.summary["all"]["tasks"].items():
        out.setdefault(t, Stat(v["return_mean"], v["return_std"], ".1f"))
    return out


def table6(runs: Sequence[EvalRun]) -> Table:
    """Table 6: MTDiff-P's return per task, paper (v2 names mapped to v3) beside ours."""
    ours = {r.view: episode_returns(r) for r in runs if r.view in VIEWS}
    from mtdiff.envs.metaworld import ALL_TASKS

    order = list(paper.TABLE6) + [t for t in ALL_TASKS if t not in paper.TABLE6]
    for per_task in ours.values():
        order += [t for t in per_task if t not in order]
    rows: list[list[Value]] = []
    for t in order:
        near, sub = paper.TABLE6.get(t, (None, None))
        absent = "not in the paper's table" if t in paper.TABLE6_MISSING else MISSING
        rows.append([t, _paper(near, ".1f") if near else absent,
                     ours.get("near-optimal", {}).get(t, MISSING),
                     _paper(sub, ".1f") if sub else absent,
                     ours.get("sub-optimal", {}).get(t, MISSING)])
    n = {v: len(x) for v, x in ours.items()}
    # Meta-World evaluation ends an episode at its first success by default
    # (eval.stop_on_success): returns then count only up to that step.
    cut = [r for r in runs if r.summary.get("eval", {}).get("stop_on_success")]
    cut_note = ([f"Ours ({', '.join(sorted({r.view or '?' for r in cut}))}): returns count "
                 "only up to each episode's first success (the evaluation ran with "
                 "eval.stop_on_success=true), the paper's over the whole episode: not "
                 "comparable. Evaluate with `--set eval.stop_on_success=false` for this "
                 "table."] if cut else [])
    return Table(
        "table6", "Table 6: MTDiff-P's evaluated return per task on MT50-rand",
        ["Task", "Near-optimal (paper)", "Near-optimal (ours)", "Sub-optimal (paper)",
         "Sub-optimal (ours)"], rows,
        meta={"paper": "mean ± std over 50 episodes per task (v2 task names shown as v3)",
              "ours": _provenance(runs) or "not run",
              "ours: tasks evaluated": ", ".join(f"{v} {k}" for k, v in n.items()) or "0"},
        preset=_presets(runs),
        stat_columns=("Near-optimal (paper)", "Near-optimal (ours)", "Sub-optimal (paper)",
                      "Sub-optimal (ours)"),
        notes=["Ours: mean ± std over all episodes of the task (every seed), own prompt.",
               "Our copy of the paper's Table 6 has 49 rows: box-close has none.",
               *cut_note, *_view_note(runs)])


def _change(ours: float, base: float | None) -> str:
    if base is None or base <= 0:
        return ""
    pct = 100.0 * (ours - base) / base
    return f" ({'↑' if pct >= 0 else '↓'} {abs(pct):.0f}%)"


def table2(records: Sequence[dict[str, Any]], preset: str) -> Table:
    """Table 2: TD3-BC success (%) on original vs RAD / S4RL / MTDiff-S augmented data.

    `records` follow `contracts` ("table2"); ours are mean ± std over seeds, with the
    change relative to our Original as the paper prints it.
    """
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    seen: dict[str, bool] = {}
    for r in records:
        vals[(r["task"], r["method"])].append(float(r["success"]))
        seen[r["task"]] = bool(r["seen"])
    presets = _record_presets(records, preset)
    by_base = {paper.base_name(t): t for t in seen}
    paper_rows = {paper.base_name(p.task): p for p in paper.TABLE2}
    order = [p.task for p in paper.TABLE2] + [t for t in seen
                                              if paper.base_name(t) not in paper_rows]
    rows: list[list[Value]] = []
    for t in order:
        p = paper_rows.get(paper.base_name(t))
        ours_t = by_base.get(paper.base_name(t))
        base = vals.get((ours_t, "original")) if ours_t else None
        base_mean = float(np.mean(base)) if base else None
        split = ("seen" if p.seen else "unseen") if p else ("seen" if seen[t] else "unseen")
        if p and ours_t and seen[ours_t] != p.seen:
            split += f" (ours: {'seen' if seen[ours_t] else 'unseen'})"
        row: list[Value] = [t, split]
        n_seeds = set()
        for m in paper.TABLE2_METHODS:
            if p is None:
                row.append(MISSING)
            else:
                row.append(_paper(p.original) if m == "original" else NOT_LEGIBLE)
            v = vals.get((ours_t, m)) if ours_t else None
            if v:
                n_seeds.add(len(v))
                suffix = "" if m == "original" else _change(float(np.mean(v)), base_mean)
                row.append(_pct(float(np.mean(v)), float(np.std(v)), len(v), suffix))
            else:
                row.append(MISSING)
        row.append("; ".join(c.text() for c in p.unassigned) if p else MISSING)
        row.append(", ".join(str(n) for n in sorted(n_seeds)) or MISSING)
        rows.append(row)
    cols = ["Task", "Split"]
    for m in paper.TABLE2_METHODS:
        cols += [f"{METHOD_LABELS[m]} (paper)", f"{METHOD_LABELS[m]} (ours)"]
    cols += ["Paper: legible cells, column lost", "Ours: seeds"]
    return Table(
        "table2", "Table 2: TD3-BC success rate (%) on original and augmented data",
        cols, rows,
        meta={"paper": "3 seeds, 500 episodes per task; MTDiff-S trained on 45 tasks",
              "ours": f"preset `{presets}`, "
                      f"{len(records)} records (offline/table2.json)"},
        stat_columns=tuple(c for c in cols if c.endswith(")")),
        preset=presets,
        notes=["Our copy of Table 2 prints 4 column headers but 3 numbers per row: the "
               "first is Original (the printed changes are relative to it); the column of "
               "the other two is not legible, so they are listed as printed in the last "
               "paper column, and S4RL / RAD / MTDiff-S paper cells read 'not legible'.",
               *[f"Note: {n}" for n in paper.TABLE2_TEXT_NOTES],
               "Ours: mean ± std over TD3-BC seeds; (↑/↓ x%) relative to our Original."])


def table4(records: Sequence[dict[str, Any]], preset: str) -> tuple[Table, Table]:
    """Table 4: dynamics error and L2 distance per method (ours: mean ± std over tasks),
    and the per-task numbers behind it."""
    by_m: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_m[r["method"]].append(r)
    methods = [m for m in ("mtdiff-s", "s4rl", "rad") if m in paper.TABLE4 or m in by_m]
    methods += [m for m in by_m if m not in methods]
    rows: list[list[Value]] = []
    for m in methods:
        pd, pl = paper.TABLE4.get(m, (None, None))
        rs = by_m.get(m, [])
        de = [float(r["dynamics_error"]) for r in rs]
        l2 = [float(r["l2_distance"]) for r in rs]
        rows.append([METHOD_LABELS.get(m, m), MISSING if pd is None else pd,
                     Stat(float(np.mean(de)), float(np.std(de)), ".4g", len(de)) if de else MISSING,
                     MISSING if pl is None else pl,
                     Stat(float(np.mean(l2)), float(np.std(l2)), ".4g", len(l2)) if l2 else MISSING,
                     len({r["task"] for r in rs}) or MISSING])
    presets = _record_presets(records, preset)
    main = Table(
        "table4", "Table 4: quality of the augmented data (App. E.2)",
        ["Method", "Dynamics error (paper)", "Dynamics error (ours)",
         "L2 distance from dataset (paper)", "L2 distance from dataset (ours)", "Ours: tasks"],
        rows, meta={"ours": f"preset `{presets}` (offline/quality.json)"},
        preset=presets,
        stat_columns=("Dynamics error (ours)", "L2 distance from dataset (ours)"),
        notes=["Ours: mean ± std over tasks. 'Original' (if present) is the metric on real "
               "transitions: the floor of our dynamics-error measurement.",
               "Dynamics error: MSE of the augmented next state against the simulator's; L2 "
               "distance: each point's distance to its nearest original point (SynthER)."])
    detail = Table("table4_per_task", "Table 4 per task (ours)",
                   ["Task", "Method", "Dynamics error", "L2 distance from dataset"],
                   [[r["task"], r["method"], float(r["dynamics_error"]),
                     float(r["l2_distance"])] for r in records],
                   preset=presets)
    return main, detail


def fig5_table(run: EvalRun) -> Table:
    """The numbers behind Fig. 5: Maze2D success (%) and return per map, by prompt."""
    rows: list[list[Value]] = []
    for group, prompt, key in (("train", "own", "train"), ("unseen", "own", "unseen"),
                               ("unseen", "wrong (another map's)", "unseen_wrong_prompt")):
        for m, v in run.summary.get(key, {}).get("tasks", {}).items():
            rows.append([m, group, prompt, _pct(v["success_mean"], v["success_std"]),
                         Stat(v["return_mean"], v["return_std"], ".1f")])
    return Table("fig5", "Fig. 5: Maze2D success (%) and return per map, MTDiff-P (ours)",
                 ["Map", "Group", "Prompt", "Success (ours)", "Return (ours)"], rows,
                 meta={"ours": _provenance([run]), "paper": "not legible (figure lost)"},
                 preset=run.preset,
                 notes=[paper.FIG5_NOTE, "Ours: mean ± std over evaluation seeds."])


def fig6_tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    """Fig. 6's tasks in our records: the paper's three first (its order), then the rest."""
    ours = {r["task"] for r in records}
    return [t for t in paper.FIG6_TASKS if t in ours] + sorted(ours - set(paper.FIG6_TASKS))


def _over_seeds(vals: Sequence[float]) -> Value:
    """Success (%) over seeds: mean ± std for several, the value itself for one."""
    if len(vals) > 1:
        return _pct(float(np.mean(vals)), float(np.std(vals)), len(vals))
    return f"{100.0 * vals[0]:.2f}" if vals else MISSING


def _per_seed_mean(per_task: Sequence[dict[int, float]]) -> list[float]:
    """Per seed, the mean over the tasks that have it (Table 1's convention)."""
    seeds = sorted({s for d in per_task for s in d})
    return [float(np.mean([d[s] for d in per_task if s in d])) for s in seeds]


def fig6_table(records: Sequence[dict[str, Any]], preset: str) -> Table:
    """The numbers behind Fig. 6: TD3-BC success (%) per task on the original data and on
    it augmented by MTDiff-S-single or by (multi-task) MTDiff-S (`contracts`, "single_task")."""
    vals: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in records:
        vals[(r["task"], r["method"])][int(r["seed"])] = float(r["success"])
    tasks = fig6_tasks(records)
    rows: list[list[Value]] = []
    for t in tasks:
        per_m = [list(vals.get((t, m), {}).values()) for m in SINGLE_METHODS]
        rows.append([t, *[_over_seeds(v) for v in per_m],
                     ", ".join(str(n) for n in sorted({len(v) for v in per_m if v}))])
    if len(tasks) > 1:
        per_m = [_per_seed_mean([vals[(t, m)] for t in tasks if (t, m) in vals])
                 for m in SINGLE_METHODS]
        rows.append([f"mean over {len(tasks)} tasks", *[_over_seeds(v) for v in per_m],
                     ", ".join(str(n) for n in sorted({len(v) for v in per_m if v}))])
    presets = _record_presets(records, preset)
    cols = [f"{METHOD_LABELS[m]} (ours)" for m in SINGLE_METHODS]
    return Table("fig6", "Fig. 6: TD3-BC success (%), multi-task vs single-task MTDiff-S",
                 ["Task", *cols, "Ours: seeds"], rows,
                 meta={"paper": "not legible (figure lost)",
                       "ours": f"preset `{presets}`, {len(records)} records "
                               "(offline/single_task.json)"},
                 preset=presets, stat_columns=tuple(cols),
                 notes=["Original: TD3-BC on the task's data; MTDiff-S-single / MTDiff-S: on "
                        "it plus data from MTDiff-S trained on that task only / on many tasks.",
                        "Ours: mean ± std over TD3-BC seeds (one seed: its value); the mean "
                        "row takes, per seed, the mean over tasks, then mean ± std over seeds.",
                        paper.FIG6_NOTE])


def fig7_table(records: Sequence[dict[str, Any]], preset: str) -> Table:
    """The numbers behind Fig. 7: TD3-BC success (%) vs MTDiff-S's number of training tasks."""
    vals: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in records:
        vals[(r["task"], int(r["num_tasks"]))].append(float(r["success"]))
    rows: list[list[Value]] = [[t, n, _pct(float(np.mean(v)), float(np.std(v)), len(v)),
                                len(v), NOT_LEGIBLE]
                               for (t, n), v in sorted(vals.items())]
    presets = _record_presets(records, preset)
    return Table("fig7", "Fig. 7: TD3-BC success (%) vs number of MTDiff-S training tasks",
                 ["Task", "MTDiff-S training tasks", "Success (ours)", "Ours: seeds",
                  "Success (paper)"], rows,
                 meta={"ours": f"preset `{presets}` (offline/task_count.json)"},
                 preset=presets,
                 notes=[paper.FIG7_NOTE])
