"""The planning tables from evaluate jobs: Tables 1, 3, 5, 6, per-task success, Maze2D.

Each takes the graph's evaluations (`records.EvalRun`, one per trained model: suite,
method, view, training seed), adds its cells to `Results` (results.json) and returns the
table(s) and the paper's orderings tested on our numbers (`claims`). A row of a method
the graph did not evaluate shows "–" ("not run" in Table 5).
"""

from __future__ import annotations

from collections.abc import Sequence

from mtdiff.methods import find_method
from mtdiff.report import paper
from mtdiff.report.cells import (
    RETURN,
    SUCCESS,
    Results,
    basis,
    eval_cell,
    eval_tasks,
    paper_stat,
)
from mtdiff.report.claims import Claim, paper_order, stated
from mtdiff.report.records import EvalRun, task_set_name
from mtdiff.report.stats import CellStats
from mtdiff.report.table import MISSING, NOT_RUN, Table, Value

VIEWS = ("near-optimal", "sub-optimal")
MAZE_GROUPS = (("train", "own", "training maps"), ("unseen", "own", "unseen maps, own prompt"),
               ("unseen", "wrong", "unseen maps, wrong prompt"))
SPREAD_NOTE = ("Ours: mean ± std [95% CI] over training seeds when a cell has two or more "
               "(Student's t), else over the episodes of its one seed (resampled within "
               "each task: bootstrap); the n column says which and how many seeds and "
               "episodes stand behind each cell.")


def label_of(method: str, fallback: str | None = None) -> str:
    """The method registry's label (the paper's name), else `fallback`, the paper's row
    label for that method, or the name."""
    m = find_method(method)
    if m is not None:
        return m.label
    rows = {r[-1]: r[0] for r in (*paper.TABLE1, *paper.TABLE3, *paper.TABLE5) if r[-1]}
    return fallback or rows.get(method, method)


def select(evals: Sequence[EvalRun], suite: str, method: str,
           view: str | None = None) -> list[EvalRun]:
    """The evaluations of one model cell (all its training seeds)."""
    return [r for r in evals if r.suite == suite and r.method == method
            and (view is None or r.view == view)]


def methods_of(evals: Sequence[EvalRun], suite: str, first: Sequence[str] = ()) -> list[str]:
    """The methods evaluated on `suite`: `first` (those present) then the rest in order."""
    found = list(dict.fromkeys(r.method for r in evals if r.suite == suite))
    return [m for m in first if m in found] + [m for m in found if m not in first]


def _view_table(name: str, title: str, rows_spec: Sequence[tuple[str, paper.Cell | None,
                paper.Cell | None, str | None]], evals: Sequence[EvalRun], res: Results,
                paper_note: str) -> tuple[Table, dict[tuple[str, str], CellStats]]:
    """A table of success (%) on Meta-World per method row and dataset view (Tables 1, 3)."""
    mw = [r for r in evals if r.suite == "metaworld"]
    rows: list[list[Value]] = []
    cells: dict[tuple[str, str], CellStats] = {}
    for plabel, near, sub, method in rows_spec:
        label = label_of(method, plabel) if method else plabel
        row: list[Value] = [label]
        tasks: set[str] = set()
        for view, pc in zip(VIEWS, (near, sub), strict=True):
            runs = select(mw, "metaworld", method, view) if method else []
            cell = eval_cell(runs, group="train") if runs else None
            ts = eval_tasks(runs, "train")
            tasks |= {task_set_name(ts)} if ts else set()
            row += [paper_stat(pc), res.add(name, cell, method=method, label=label, view=view,
                                            tasks=task_set_name(ts) if ts else None,
                                            group="train", paper_cell=pc), basis(cell)]
            if cell is not None and method:
                cells[(method, view)] = cell
        rows.append(row + [", ".join(sorted(tasks)) or MISSING])
    cols = ["Method"]
    for v in ("Near-optimal", "Sub-optimal"):
        cols += [f"{v} (paper)", f"{v} (ours)", f"{v}: n"]
    cols.append("Ours: tasks")
    ours_cols = ("Near-optimal (ours)", "Sub-optimal (ours)")
    return Table(name, title, cols, rows, meta={"paper": paper_note, "ours": res.preset},
                 stat_columns=("Near-optimal (paper)", "Sub-optimal (paper)", *ours_cols),
                 ci_columns=ours_cols, notes=[SPREAD_NOTE]), cells


def table1(evals: Sequence[EvalRun], res: Results) -> tuple[Table, list[Claim]]:
    """Table 1: MT50-rand success (%), the paper's nine rows (CARE and PaCo: its online
    references), near- and sub-optimal, ours beside; a Meta-World planner not in the
    paper's table (nor Table 3's U-Net) gets a row of its own."""
    spec = list(paper.TABLE1)
    known = {m for *_, m in spec} | {m for *_, m in paper.TABLE3}
    spec += [(label_of(m), None, None, m) for m in methods_of(evals, "metaworld")
             if m not in known]
    table, cells = _view_table("table1", "Table 1: average success rate (%) on Meta-World "
                               "MT50-rand", spec, evals, res,
                               "MT50-rand (50 tasks), 3 seeds x 50 episodes per task")
    table.notes += ["Ours: success over the tasks each model was trained on (the mean over "
                    "tasks of each task's success rate).",
                    "– : not run in this graph, or not reported by the paper (MTCQL 'almost "
                    "fails'; CARE and PaCo are online RL, 100M steps, not reproduced)."]
    ours = {"mtdiff-p", "mtdiff-p-onehot"}
    claims = []
    for i, view in enumerate(VIEWS):
        rows = [(label_of(m, lab), (near, sub)[i], m) for lab, near, sub, m in paper.TABLE1
                if m is not None and (near, sub)[i] is not None]
        for j, (la, pa, ma) in enumerate(rows):
            for lb, pb, mb in rows[j + 1:]:
                if ma not in ours and mb not in ours:
                    continue  # the paper's claims are about its methods
                c = paper_order("Table 1", view, (la, pa.mean, cells.get((ma, view))),
                                (lb, pb.mean, cells.get((mb, view))))
                claims += [c] if c else []
    return table, claims


def table3(evals: Sequence[EvalRun], res: Results) -> tuple[Table, list[Claim]]:
    """Table 3: MTDiff-P (GPT-2) vs MTDiff-P (U-Net), both views."""
    table, cells = _view_table("table3", "Table 3: success rate (%), MTDiff-P with GPT-2 vs "
                               "U-Net backbone, MT50-rand", paper.TABLE3, evals, res,
                               "MT50-rand, 3 seeds (App. C)")
    (la, *pa, ma), (lb, *pb, mb) = paper.TABLE3
    claims = [paper_order("Table 3", v, (label_of(ma, la), pa[i].mean, cells.get((ma, v))),
                          (label_of(mb, lb), pb[i].mean, cells.get((mb, v))))
              for i, v in enumerate(VIEWS)]
    return table, [c for c in claims if c]


def models(evals: Sequence[EvalRun], suite: str = "metaworld") -> list[tuple[str, str | None]]:
    """The (method, view) models evaluated on `suite`, in graph order."""
    return list(dict.fromkeys((r.method, r.view) for r in evals if r.suite == suite))


def model_label(method: str, view: str | None) -> str:
    """E.g. "MTDiff-P (near-optimal)"."""
    return label_of(method) + (f" ({view})" if view else "")


def per_task_success(evals: Sequence[EvalRun], res: Results
                     ) -> tuple[Table, dict[str, dict[str, CellStats]]]:
    """Our success (%) per Meta-World task, one column per model (method, view); and the
    cells by model label and task (for the plot)."""
    ms = models(evals)
    tasks = eval_tasks([r for r in evals if r.suite == "metaworld"], None)
    rows: list[list[Value]] = []
    cells: dict[str, dict[str, CellStats]] = {model_label(m, v): {} for m, v in ms}
    for t in tasks:
        row: list[Value] = [t]
        for m, v in ms:
            cell = eval_cell(select(evals, "metaworld", m, v), group=None, task=t)
            row.append(res.add("success_per_task", cell, method=m, label=label_of(m), view=v,
                               tasks=t))
            if cell is not None:
                cells[model_label(m, v)][t] = cell
        rows.append(row)
    cols = [model_label(m, v) for m, v in ms]
    return Table("success_per_task", "Per-task success rate (%), ours (no per-task numbers "
                 "in the paper)", ["Task", *cols], rows, meta={"ours": res.preset},
                 ci_columns=tuple(cols), notes=[SPREAD_NOTE]), cells


def table6(evals: Sequence[EvalRun], res: Results) -> Table:
    """Table 6: MTDiff-P's return per task, paper (v2 names mapped to v3) beside ours."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.metaworld import ALL_TASKS

    runs = {v: select(evals, "metaworld", "mtdiff-p", v) for v in VIEWS}
    ours_tasks = eval_tasks([r for rs in runs.values() for r in rs], None)
    order = list(paper.TABLE6) + [t for t in ALL_TASKS if t not in paper.TABLE6]
    order += [t for t in ours_tasks if t not in order]
    rows: list[list[Value]] = []
    for t in order:
        pcells = paper.TABLE6.get(t, (None, None))
        absent = "not in the paper's table" if t in paper.TABLE6_MISSING else MISSING
        row: list[Value] = [t]
        for v, pc in zip(VIEWS, pcells, strict=True):
            cell = eval_cell(runs[v], group=None, metric=RETURN, task=t) if runs[v] else None
            row += [paper_stat(pc, ".1f") if pc else absent,
                    res.add("table6", cell, method="mtdiff-p", label="MTDiff-P", view=v,
                            tasks=t, metric=RETURN, paper_cell=pc, fmt=".1f")]
        rows.append(row)
    cut = [r for rs in runs.values() for r in rs if r.eval_settings.get("stop_on_success")]
    cut_note = ([f"Ours ({', '.join(sorted({r.view or '?' for r in cut}))}): returns count "
                 "only up to each episode's first success (the evaluation ran with "
                 "eval.stop_on_success=true), the paper's over the whole episode: not "
                 "comparable. Evaluate with `--set eval.stop_on_success=false` for this "
                 "table."] if cut else [])
    ours_cols = ("Near-optimal (ours)", "Sub-optimal (ours)")
    return Table(
        "table6", "Table 6: MTDiff-P's evaluated return per task on MT50-rand",
        ["Task", "Near-optimal (paper)", "Near-optimal (ours)", "Sub-optimal (paper)",
         "Sub-optimal (ours)"], rows,
        meta={"paper": "mean ± std over 50 episodes per task (v2 task names shown as v3)",
              "ours": ", ".join(f"{v}: {len(rs)} seed(s)" for v, rs in runs.items())},
        stat_columns=("Near-optimal (paper)", "Sub-optimal (paper)", *ours_cols),
        ci_columns=ours_cols,
        notes=["Ours: return, mean ± std [95% CI] over training seeds (per seed: the mean "
               "over the task's episodes), or over the episodes of one seed.",
               "Our copy of the paper's Table 6 has 49 rows: box-close has none.", *cut_note])


def maze(evals: Sequence[EvalRun], res: Results) -> tuple[Table, Table, list[Claim],
                                                           dict[str, dict[str, CellStats]]]:
    """Maze2D (Fig. 5, Figs. 4, 9, 10): success (%) per method on training maps, unseen
    maps with their own prompt and with another map's (the control); per-map success and
    return. Returns (summary, per map, claims, {method: {column: cell}})."""
    ms = methods_of(evals, "maze2d", ("mtdiff-p", "promptdt"))
    rows: list[list[Value]] = []
    cells: dict[str, dict[str, CellStats]] = {}
    for m in ms:
        runs = select(evals, "maze2d", m)
        row: list[Value] = [label_of(m)]
        for group, prompt, col in MAZE_GROUPS:
            cell = eval_cell(runs, group=group, prompt=prompt)
            maps = eval_tasks(runs, group, prompt)
            row += [res.add("maze2d", cell, method=m, label=label_of(m), tasks=",".join(maps)
                            or None, group=col), basis(cell)]
            if cell is not None:
                cells.setdefault(m, {})[col] = cell
        rows.append(row)
    cols = ["Method"]
    for *_, col in MAZE_GROUPS:
        cols += [f"{col[0].upper()}{col[1:]} (ours)", f"{col[0].upper()}{col[1:]}: n"]
    ours_cols = tuple(c for c in cols if c.endswith("(ours)"))
    summary = Table("maze2d", "Maze2D success rate (%): training maps, unseen maps, wrong-prompt "
                    "control", cols, rows, meta={"paper": "not legible (figures lost)",
                                                 "ours": res.preset},
                    ci_columns=ours_cols, notes=[SPREAD_NOTE, paper.FIG5_NOTE,
                                                 "Wrong prompt: an unseen map evaluated with "
                                                 "a training map's prompt (a control: the "
                                                 "prompt should matter)."])
    per_map: list[list[Value]] = []
    for group, prompt, col in MAZE_GROUPS:
        all_runs = [r for m in ms for r in select(evals, "maze2d", m)]
        for mp in eval_tasks(all_runs, group, prompt):
            row = [mp, col]
            for m in ms:
                runs = select(evals, "maze2d", m)
                for metric, fmt in ((SUCCESS, ".2f"), (RETURN, ".1f")):
                    cell = eval_cell(runs, group=group, prompt=prompt, metric=metric, task=mp)
                    row.append(res.add("maze2d_per_map", cell, method=m, label=label_of(m),
                                       tasks=mp, group=col, metric=metric, fmt=fmt))
            per_map.append(row)
    pcols = [f"{label_of(m)} {w}" for m in ms for w in ("success (%)", "return")]
    detail = Table("fig5", "Maze2D per map: success (%) and return (ours)",
                   ["Map", "Group", *pcols], per_map, meta={"ours": res.preset},
                   ci_columns=tuple(pcols), notes=[SPREAD_NOTE])
    claims: list[Claim] = []
    own, wrong = MAZE_GROUPS[1][2], MAZE_GROUPS[2][2]
    for m in ms:
        c = cells.get(m, {})
        claims += [stated("Maze2D", f"unseen maps, {label_of(m)}", ("own prompt", c.get(own)),
                          ("wrong prompt", c.get(wrong)), "the control: a map's own prompt "
                          "should help")]
    p, d = cells.get("mtdiff-p", {}), cells.get("promptdt", {})
    for col, ev in ((MAZE_GROUPS[0][2], "Fig. 5 lost; §5.2: shorter, smoother paths"),
                    (own, "§5.2, Figs. 4, 10: PromptDT fails where MTDiff-P succeeds")):
        claims += [stated("Maze2D", col, (label_of("mtdiff-p"), p.get(col)),
                          (label_of("promptdt", "PromptDT"), d.get(col)), ev)]
    return summary, detail, [c for c in claims if c], cells


def table5(evals: Sequence[EvalRun], res: Results) -> tuple[Table, list[Claim]]:
    """Table 5: average return on Cheetah-vel and Ant-dir, training and held-out tasks,
    MTDiff-P and Prompt-DT (and any other method the graph evaluated there)."""
    spec = {m: (lab, ch, ant) for lab, ch, ant, m in paper.TABLE5}
    ms = list(spec) + [m for s in paper.TABLE5_SUITES for m in methods_of(evals, s)
                       if m not in spec]
    rows: list[list[Value]] = []
    cells: dict[tuple[str, str, str], CellStats] = {}
    for m in dict.fromkeys(ms):
        plabel, *pcells = spec.get(m, (None, None, None))
        label = label_of(m, plabel)
        row: list[Value] = [label]
        for suite, pc in zip(paper.TABLE5_SUITES, pcells, strict=True):
            runs = select(evals, suite, m)
            row.append(paper_stat(pc))
            for group in ("train", "heldout"):
                cell = eval_cell(runs, group=group, metric=RETURN) if runs else None
                row.append(res.add("table5", cell, method=m, label=label, tasks=suite,
                                   group=group, metric=RETURN, paper_cell=pc, missing=NOT_RUN))
                if cell is not None:
                    cells[(m, suite, group)] = cell
        n = [basis(cells.get((m, s, g))) for s in paper.TABLE5_SUITES
             for g in ("train", "heldout") if (m, s, g) in cells]
        rows.append(row + ["; ".join(dict.fromkeys(n)) or NOT_RUN])
    cols = ["Method"]
    for s in ("Cheetah-vel", "Ant-dir"):
        cols += [f"{s} (paper)", f"{s}: training tasks (ours)", f"{s}: held-out tasks (ours)"]
    cols.append("Ours: n")
    claims = []
    (la, *pa, ma), (lb, *pb, mb) = paper.TABLE5
    for i, suite in enumerate(paper.TABLE5_SUITES):
        for group in ("train", "heldout"):
            c = paper_order("Table 5", f"{suite}, {group} tasks",
                            (label_of(ma, la), pa[i].mean, cells.get((ma, suite, group))),
                            (label_of(mb, lb), pb[i].mean, cells.get((mb, suite, group))))
            claims += [c] if c else []
    ours_cols = tuple(c for c in cols if c.endswith("(ours)"))
    return Table("table5", "Table 5: average return on Cheetah-vel and Ant-dir", cols, rows,
                 meta={"paper": "3 seeds (App. H); tasks not stated", "ours": res.preset},
                 stat_columns=("Cheetah-vel (paper)", "Ant-dir (paper)", *ours_cols),
                 ci_columns=ours_cols,
                 notes=[paper.TABLE5_NOTE, SPREAD_NOTE,
                        "Ours: return per episode, per seed the mean over the tasks' mean "
                        "returns; 'not run': the graph has no such evaluation."]), claims
