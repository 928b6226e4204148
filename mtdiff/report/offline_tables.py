"""The offline-RL tables from TD3-BC and quality records: Table 2, Table 4, Figs. 6 and 7.

Records are the results of the graph's offline and quality jobs (task, method, seed,
seen, success, episodes[, num_tasks]) and, for Fig. 7, those of `sweeps/task_count.py`
(its contract file, `contracts.TASK_COUNT_FILE`). Success is in percent; a TD3-BC
cell is mean ± std [95% CI] over TD3-BC seeds, or over the episodes of one seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mtdiff.report import paper
from mtdiff.report.cells import Results, basis, paper_stat, seed_cell, task_cell
from mtdiff.report.contracts import SINGLE_METHODS
from mtdiff.report.stats import CellStats
from mtdiff.report.table import MISSING, NOT_LEGIBLE, Table, Value

METHOD_LABELS = {"original": "Original", "s4rl": "S4RL", "rad": "RAD", "mtdiff-s": "MTDiff-S",
                 "mtdiff-s-single": "MTDiff-S-single"}
TD3BC_NOTE = ("Ours: TD3-BC success (%), mean ± std [95% CI] over TD3-BC seeds when a cell "
              "has two or more (Student's t), else over the evaluation episodes of its one "
              "seed (bootstrap); n says which.")


def _by(records: Sequence[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def _change(ours: float, base: float | None) -> str:
    if base is None or base <= 0:
        return ""
    pct = 100.0 * (ours - base) / base
    return f" ({'↑' if pct >= 0 else '↓'} {abs(pct):.0f}%)"


def table2(records: Sequence[dict[str, Any]], res: Results) -> Table:
    """Table 2: TD3-BC success (%) on original vs RAD / S4RL / MTDiff-S augmented data,
    with the change relative to our Original as the paper prints it."""
    recs = [r for r in records if r["method"] in paper.TABLE2_METHODS and "num_tasks" not in r]
    cells = _by(recs, "task", "method")
    seen = {r["task"]: bool(r["seen"]) for r in recs}
    by_base = {paper.base_name(t): t for t in seen}
    paper_rows = {paper.base_name(p.task): p for p in paper.TABLE2}
    order = [p.task for p in paper.TABLE2] + [t for t in seen
                                              if paper.base_name(t) not in paper_rows]
    rows: list[list[Value]] = []
    for t in order:
        p = paper_rows.get(paper.base_name(t))
        ours_t = by_base.get(paper.base_name(t))
        base = seed_cell(cells.get((ours_t, "original"), []))
        split = ("seen" if p.seen else "unseen") if p else ("seen" if seen[t] else "unseen")
        if p and ours_t and seen[ours_t] != p.seen:
            split += f" (ours: {'seen' if seen[ours_t] else 'unseen'})"
        row: list[Value] = [t, split]
        n = []
        for m in paper.TABLE2_METHODS:
            pc = p.original if p and m == "original" else None
            row.append(MISSING if p is None else (paper_stat(pc) if pc else NOT_LEGIBLE))
            cell = seed_cell(cells.get((ours_t, m), []))
            suffix = "" if m == "original" or cell is None else _change(
                cell.mean, base.mean if base else None)
            row.append(res.add("table2", cell, method=m, label=METHOD_LABELS[m], tasks=t,
                               paper_cell=pc, suffix=suffix))
            n += [basis(cell)] if cell else []
        row.append("; ".join(c.text() for c in p.unassigned) if p else MISSING)
        row.append("; ".join(dict.fromkeys(n)) or MISSING)
        rows.append(row)
    cols = ["Task", "Split"]
    for m in paper.TABLE2_METHODS:
        cols += [f"{METHOD_LABELS[m]} (paper)", f"{METHOD_LABELS[m]} (ours)"]
    cols += ["Paper: legible cells, column lost", "Ours: n"]
    ours_cols = tuple(c for c in cols if c.endswith("(ours)"))
    return Table(
        "table2", "Table 2: TD3-BC success rate (%) on original and augmented data", cols, rows,
        meta={"paper": "3 seeds, 500 episodes per task; MTDiff-S trained on 45 tasks",
              "ours": f"{res.preset}, {len(recs)} TD3-BC runs"},
        stat_columns=tuple(c for c in cols if c.endswith(")")), ci_columns=ours_cols,
        notes=["Our copy of Table 2 prints 4 column headers but 3 numbers per row: the "
               "first is Original (the printed changes are relative to it); the column of "
               "the other two is not legible, so they are listed as printed in the last "
               "paper column, and S4RL / RAD / MTDiff-S paper cells read 'not legible'.",
               *[f"Note: {n}" for n in paper.TABLE2_TEXT_NOTES],
               TD3BC_NOTE, "(↑/↓ x%): relative to our Original's mean."])


def table4(records: Sequence[dict[str, Any]], res: Results) -> tuple[Table, Table]:
    """Table 4: dynamics error and L2 distance per method (ours over tasks: one quality
    job per task, the first TD3-BC seed), and the per-task numbers behind it."""
    by_m = _by(records, "method")
    methods = [m for m in ("mtdiff-s", "s4rl", "rad") if m in paper.TABLE4 or (m,) in by_m]
    methods += [m for (m,) in by_m if m not in methods]
    rows: list[list[Value]] = []
    for m in methods:
        pd, pl = paper.TABLE4.get(m, (None, None))
        rs = by_m.get((m,), [])
        label = METHOD_LABELS.get(m, m)
        row: list[Value] = [label]
        for key, pv in (("dynamics_error", pd), ("l2_distance", pl)):
            cell = task_cell({r["task"]: float(r[key]) for r in rs})
            row += [MISSING if pv is None else pv,
                    res.add("table4", cell, method=m, label=label, metric=key,
                            tasks=",".join(r["task"] for r in rs) or None,
                            paper_cell=pv,
                            fmt=".4g")]
        rows.append(row + [len({r["task"] for r in rs}) or MISSING])
    ours_cols = ("Dynamics error (ours)", "L2 distance from dataset (ours)")
    main = Table(
        "table4", "Table 4: quality of the augmented data (App. E.2)",
        ["Method", "Dynamics error (paper)", "Dynamics error (ours)",
         "L2 distance from dataset (paper)", "L2 distance from dataset (ours)", "Ours: tasks"],
        rows, meta={"ours": res.preset}, stat_columns=ours_cols, ci_columns=ours_cols,
        notes=["Ours: mean ± std [95% CI, Student's t] over tasks (one measurement per task, "
               "with the first TD3-BC seed's S4RL agent). The paper prints no spread.",
               "Dynamics error: MSE of the augmented next state against the simulator's; L2 "
               "distance: each point's distance to its nearest original point (SynthER)."])
    detail = Table("table4_per_task", "Table 4 per task (ours)",
                   ["Task", "Method", "Dynamics error", "L2 distance from dataset"],
                   [[r["task"], r["method"], float(r["dynamics_error"]),
                     float(r["l2_distance"])] for r in records], preset=res.preset)
    return main, detail


def fig6_tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    """Fig. 6's tasks in our records: the paper's three first (its order), then the rest."""
    ours = {r["task"] for r in records}
    return [t for t in paper.FIG6_TASKS if t in ours] + sorted(ours - set(paper.FIG6_TASKS))


def fig6_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TD3-BC records of Fig. 6: tasks that have an MTDiff-S-single run, its three
    columns."""
    single = {r["task"] for r in records if r["method"] == "mtdiff-s-single"}
    return [r for r in records if r["task"] in single and r["method"] in SINGLE_METHODS
            and "num_tasks" not in r]


def fig6_table(records: Sequence[dict[str, Any]], res: Results
               ) -> tuple[Table, dict[str, dict[str, CellStats]]]:
    """The numbers behind Fig. 6: TD3-BC success (%) per task on the original data and on
    it augmented by MTDiff-S-single or by (multi-task) MTDiff-S; a mean row over tasks
    (per seed the mean over tasks) when there are several. Also the cells by method and
    task (for the plot)."""
    out: dict[str, dict[str, CellStats]] = {m: {} for m in SINGLE_METHODS}
    cells = _by(records, "task", "method")
    tasks = fig6_tasks(records)
    rows: list[list[Value]] = []
    groups = [(t, [t]) for t in tasks] + ([(f"mean over {len(tasks)} tasks", tasks)]
                                          if len(tasks) > 1 else [])
    for name, ts in groups:
        row: list[Value] = [name]
        n = []
        for m in SINGLE_METHODS:
            cell = seed_cell([r for t in ts for r in cells.get((t, m), [])])
            row.append(res.add("fig6", cell, method=m, label=METHOD_LABELS[m],
                               tasks=",".join(ts)))
            n += [basis(cell)] if cell else []
            if cell is not None and len(ts) == 1:
                out[m][name] = cell
        rows.append(row + ["; ".join(dict.fromkeys(n)) or MISSING])
    cols = [f"{METHOD_LABELS[m]} (ours)" for m in SINGLE_METHODS]
    return Table("fig6", "Fig. 6: TD3-BC success (%), multi-task vs single-task MTDiff-S",
                 ["Task", *cols, "Ours: n"], rows,
                 meta={"paper": "not legible (figure lost)",
                       "ours": f"{res.preset}, {len(records)} TD3-BC runs"},
                 preset=res.preset, stat_columns=tuple(cols), ci_columns=tuple(cols),
                 notes=["Original: TD3-BC on the task's data; MTDiff-S-single / MTDiff-S: on "
                        "it plus data from MTDiff-S trained on that task only / on many tasks.",
                        TD3BC_NOTE, paper.FIG6_NOTE]), out


def fig7_records(graph: Sequence[dict[str, Any]],
                 sweep: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fig. 7's records: the graph's (TD3-BC on data of MTDiff-S trained on N tasks) and
    those of `sweeps/task_count.py` in the contract file that the graph does not have
    (same task, N, seed); the file's records the report job exported from a graph
    ("source": "graph") are not read back."""
    ours = [r for r in graph if "num_tasks" in r]
    have = {(r["task"], int(r["num_tasks"]), int(r["seed"])) for r in ours}
    return ours + [{**r, "source": "sweep"} for r in sweep if r.get("source") != "graph"
                   and (r["task"], int(r["num_tasks"]), int(r["seed"])) not in have]


def fig7_table(records: Sequence[dict[str, Any]], res: Results
               ) -> tuple[Table, dict[str, dict[int, CellStats]]]:
    """The numbers behind Fig. 7: TD3-BC success (%) vs MTDiff-S's number of training
    tasks; and the cells by task and number of tasks (for the plot)."""
    rows: list[list[Value]] = []
    out: dict[str, dict[int, CellStats]] = defaultdict(dict)
    for (t, n), rs in sorted(_by(records, "task", "num_tasks").items()):
        cell = seed_cell(rs)
        if cell is not None:
            out[t][int(n)] = cell
        src = ", ".join(sorted({r.get("source", "graph") for r in rs}))
        rows.append([t, n, res.add("fig7", cell, method=f"mtdiff-s-{n}-tasks",
                                   label=f"MTDiff-S ({n} tasks)", tasks=t),
                     basis(cell), src, NOT_LEGIBLE])
    return Table("fig7", "Fig. 7: TD3-BC success (%) vs number of MTDiff-S training tasks",
                 ["Task", "MTDiff-S training tasks", "Success (ours)", "Ours: n", "Source",
                  "Success (paper)"], rows, meta={"ours": res.preset}, preset=res.preset,
                 stat_columns=("Success (ours)",), ci_columns=("Success (ours)",),
                 notes=[TD3BC_NOTE, "Source: this graph's jobs, or `sweeps/task_count.py` "
                        "(offline/task_count.json); a sweep record without episode counts "
                        "has no CI when it is its cell's only seed.", paper.FIG7_NOTE]), dict(out)
