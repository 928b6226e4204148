"""Reference rows of the planning tables: what "learnt nothing" scores.

From the graph's `reference/<suite>` records (`mtdiff.eval.reference`): the zero action
and a uniform random policy, evaluated with the methods' tasks, episodes, evaluation
seeds and reset seeds, and the dataset's own mean return / success. Their cells go
through the same statistics as the methods' (`cells.eval_cell`: one run, so the spread
and CI are over its episodes, resampled within each task); the dataset's is a fixed
number (no CI). Each table gets rows (or, where methods are columns, columns) beside the
methods; `results` is results.json's ``reference`` section; `against_zero` tests each
method against standing still.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtdiff.report.cells import RETURN, SUCCESS, Results, eval_cell, eval_tasks
from mtdiff.report.claims import Claim, stated
from mtdiff.report.planning import label_of, methods_of, select
from mtdiff.report.records import EvalRun, GraphRecords, local_path
from mtdiff.report.stats import CellStats, summarize
from mtdiff.report.table import MISSING, Table, Value

ZERO, RANDOM = "zero-action", "uniform-random"  # `mtdiff.eval.reference`'s policy names
LABELS = {ZERO: "zero action", RANDOM: "uniform random"}
DATASET = "dataset (mean)"
VIEWS = ("near-optimal", "sub-optimal")
NOTE = ("Reference rows: 'zero action' (standing still) and 'uniform random' were "
        "evaluated with the methods' tasks, episodes, evaluation seeds and reset seeds; "
        "their spread and CI are over episodes (no training). 'dataset (mean)': the mean "
        "over tasks of each task's mean over the dataset's episodes (no CI); held-out "
        "Cheetah-vel / Ant-dir tasks have no episodes in the dataset: theirs is the last "
        "evaluation return of the SAC policy their prompts were cut from. '–': none.")
MAZE_METRICS = ((SUCCESS, "success (%)"), (RETURN, "return"))  # per-map columns
_SCALE = {SUCCESS: 100.0, RETURN: 1.0}
_FIELD = {SUCCESS: "success_rate", RETURN: "mean_return"}


@dataclass
class SuiteReference:
    """One suite's reference record: the two policies' runs and the dataset's numbers."""

    suite: str
    job: str
    runs: dict[str, EvalRun]  # policy -> its evaluation (as an `EvalRun`, seed 0)
    dataset: dict[str, Any]  # `mtdiff.eval.reference.dataset_reference`

    def cell(self, policy: str, group: str | None, metric: str = SUCCESS,
             task: str | None = None) -> CellStats | None:
        """A reference policy's cell on `group`'s tasks (or one task)."""
        run = self.runs.get(policy)
        if run is None or (metric == SUCCESS and any(e["success"] is None
                                                     for e in run.episodes)):
            return None  # not run, or a suite without success (Cheetah-vel, Ant-dir)
        return eval_cell([run], group=group, metric=metric, task=task)

    def tasks(self, group: str | None) -> list[str]:
        """The tasks (maps) evaluated in `group`."""
        return eval_tasks(list(self.runs.values()), group)

    def dataset_cell(self, group: str | None, metric: str = SUCCESS, view: str = VIEWS[0],
                     task: str | None = None) -> CellStats | None:
        """The dataset's mean over `group`'s tasks (or one task) of each task's mean in
        `view`; None where no task has one (no episodes, or no success defined)."""
        vals, episodes = [], 0
        for t in [task] if task is not None else self.tasks(group):
            entry = self.dataset["tasks"].get(t, {}).get(view)
            if entry is not None and entry[_FIELD[metric]] is not None:
                vals.append(_SCALE[metric] * float(entry[_FIELD[metric]]))
                episodes += int(entry["episodes"])
            elif metric == RETURN and t in self.dataset.get("prompt_policy", {}):
                vals.append(float(self.dataset["prompt_policy"][t]["return"]))
        if not vals:
            return None
        return summarize({"dataset": float(np.mean(vals))}, unit="episodes",
                         episodes=episodes, seeds=())


def load(recs: GraphRecords) -> dict[str, SuiteReference]:
    """Suite -> its reference, from the graph's finished `reference` records (a file that
    does not read goes to `recs.problems`)."""
    out = {}
    for rec in recs.of_kind("reference"):
        res = rec.get("result", {})  # (an older graph's record names it reference_file)
        path = local_path(res.get("eval_file", res.get("reference_file", "")), recs.root)
        try:
            doc = json.loads(path.read_text())
            suite = doc["summary"]["suite"]
            runs = {k: EvalRun(rec["name"], suite, k, None, 0, path, doc["summary"], eps)
                    for k, eps in doc["episodes"].items()}
            out[suite] = SuiteReference(suite, rec["name"], runs, doc["dataset"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            recs.problems.append(f"{rec.get('name')}: reference `{path}` unreadable "
                                 f"({type(e).__name__}: {e})")
    return out


def basis(cell: CellStats | None, *, dataset: bool = False) -> str:
    """What stands behind a reference cell (the methods' "n" column)."""
    if cell is None:
        return MISSING
    if dataset:
        return f"dataset, {cell.episodes} ep; no CI" if cell.episodes else "SAC evaluation"
    return f"{cell.episodes} ep; CI: episodes"


def append_rows(table: Table, rows: Sequence[Mapping[str, Value]]) -> None:
    """Rows by column name ("–" for the columns a row does not fill), and the note."""
    for r in rows:
        unknown = set(r) - set(table.columns)
        if unknown:
            raise KeyError(f"{table.name} has no column(s) {sorted(unknown)}")
        table.rows.append([r.get(c, MISSING) for c in table.columns])
    if rows and NOTE not in table.notes:
        table.notes.append(NOTE)


def append_columns(table: Table, columns: Mapping[str, Mapping[str, Value]],
                   key: str | None = None) -> None:
    """Columns keyed by each row's `key` column (default the first), and the note."""
    k = table.columns.index(key) if key is not None else 0
    for name, by_row in columns.items():
        table.columns.append(name)
        for row in table.rows:
            row.append(by_row.get(str(row[k]), MISSING))
    if columns and NOTE not in table.notes:
        table.notes.append(NOTE)


def view_rows(ref: SuiteReference | None, res: Results, table: str) -> list[dict[str, Value]]:
    """Rows of a Meta-World table with near- / sub-optimal columns (Tables 1, 3): the
    policies' success on the training tasks (the same in both: no data behind them), and
    each view's dataset success."""
    if ref is None:
        return []
    tasks = ",".join(ref.tasks("train")) or None
    rows = []
    for policy, label in (*LABELS.items(), (None, DATASET)):
        row: dict[str, Value] = {"Method": label}
        for view, col in zip(VIEWS, ("Near-optimal", "Sub-optimal"), strict=True):
            cell = ref.cell(policy, "train") if policy else ref.dataset_cell("train", view=view)
            row[f"{col} (ours)"] = res.add(table, cell, method=policy or "dataset", label=label,
                                           view=view, tasks=tasks, group="train")
            row[f"{col}: n"] = basis(cell, dataset=policy is None)
        rows.append(row)
    return rows


def table5_rows(refs: Mapping[str, SuiteReference], res: Results,
                suites: Sequence[str], names: Sequence[str]) -> list[dict[str, Value]]:
    """Table 5's rows: return on the training and held-out tasks of each suite."""
    rows = []
    for policy, label in (*LABELS.items(), (None, DATASET)):
        row: dict[str, Value] = {"Method": label}
        n = []
        for suite, name in zip(suites, names, strict=True):
            ref = refs.get(suite)
            for group, col in (("train", "training tasks"), ("heldout", "held-out tasks")):
                if ref is None:
                    continue
                cell = ref.cell(policy, group, RETURN) if policy else \
                    ref.dataset_cell(group, RETURN)
                row[f"{name}: {col} (ours)"] = res.add(
                    "table5", cell, method=policy or "dataset", label=label, tasks=suite,
                    group=group, metric=RETURN)
                n += [basis(cell, dataset=policy is None)] if cell is not None else []
        row["Ours: n"] = "; ".join(dict.fromkeys(n)) or MISSING
        if len(row) > 2:
            rows.append(row)
    return rows if refs.keys() & set(suites) else []


def maze_rows(ref: SuiteReference | None, res: Results,
              groups: Sequence[tuple[str, str, str]]) -> list[dict[str, Value]]:
    """Maze2D summary rows: success on the training and unseen maps (own prompt; a
    reference ignores prompts, so the wrong-prompt control has none)."""
    if ref is None:
        return []
    rows = []
    for policy, label in (*LABELS.items(), (None, DATASET)):
        row: dict[str, Value] = {"Method": label}
        for group, prompt, col in groups:
            if prompt != "own":
                continue
            cell = ref.cell(policy, group) if policy else ref.dataset_cell(group)
            title = f"{col[0].upper()}{col[1:]}"
            row[f"{title} (ours)"] = res.add("maze2d", cell, method=policy or "dataset",
                                             label=label, group=col,
                                             tasks=",".join(ref.tasks(group)) or None)
            row[f"{title}: n"] = basis(cell, dataset=policy is None)
        rows.append(row)
    return rows


def task_columns(ref: SuiteReference | None, res: Results, table: str,
                 metrics: Sequence[tuple[str, str]] = ((SUCCESS, "success (%)"),),
                 views: Sequence[str] = VIEWS) -> dict[str, dict[str, Value]]:
    """Per-task (per-map) columns: each policy's and each view's dataset value per task;
    `metrics`: (metric, column suffix)."""
    if ref is None:
        return {}
    cols: dict[str, dict[str, Value]] = {}
    for metric, suffix in metrics:
        for policy, label in LABELS.items():
            cols[f"{label} {suffix}"] = {t: res.add(table, ref.cell(policy, None, metric, t),
                                                    method=policy, label=label, tasks=t,
                                                    metric=metric)
                                         for t in ref.tasks(None)}
        for view in views:
            cols[f"dataset {view} {suffix}" if len(views) > 1 else f"dataset {suffix}"] = {
                t: res.add(table, ref.dataset_cell(None, metric, view, t), method="dataset",
                           label=DATASET, view=view, tasks=t, metric=metric)
                for t in ref.tasks(None)}
    return cols


def method_cells(evals: Sequence[EvalRun], suite: str, group: str, metric: str = SUCCESS,
                 view: str | None = None) -> dict[str, CellStats | None]:
    """Label -> cell of every method evaluated on `suite` (one view) in `group`."""
    return {label_of(m): eval_cell(select(evals, suite, m, view), group=group, metric=metric)
            for m in methods_of(evals, suite) if select(evals, suite, m, view)}


def against_zero(table: str, column: str, methods: Mapping[str, CellStats | None],
                 ref: SuiteReference | None, group: str, metric: str = SUCCESS
                 ) -> list[Claim]:
    """Each method's cell against the zero action's: did it learn to act at all?"""
    zero = ref.cell(ZERO, group, metric) if ref is not None else None
    claims = [stated(f"{table} vs reference", column, (label, cell), (LABELS[ZERO], zero),
                     "a policy that learnt to act beats standing still")
              for label, cell in methods.items()]
    return [c for c in claims if c]


def results(refs: Mapping[str, SuiteReference]) -> dict[str, Any]:
    """results.json's ``reference``: suite -> group -> row label -> metric -> cell (the
    cells' numbers as elsewhere), with the evaluation settings behind them."""
    out: dict[str, Any] = {}
    for suite, ref in refs.items():
        groups: dict[str, Any] = {}
        for group in ("train", "heldout", "unseen"):
            if not ref.tasks(group):
                continue
            rows: dict[str, Any] = {}
            for metric in (SUCCESS, RETURN):
                for policy, label in LABELS.items():
                    c = ref.cell(policy, group, metric)
                    rows.setdefault(label, {})[metric] = c.as_dict() if c else None
                for view in VIEWS:
                    c = ref.dataset_cell(group, metric, view)
                    rows.setdefault(f"{DATASET}, {view}", {})[metric] = \
                        c.as_dict() if c else None
            groups[group] = {"tasks": ref.tasks(group), **rows}
        run = next(iter(ref.runs.values()), None)
        out[suite] = {"job": ref.job, "eval": run.eval_settings if run else {},
                      "units": {"success": "%", "return": "return"}, **groups}
    return out
