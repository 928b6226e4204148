"""The report's state-use section: does each evaluated policy act on the state and on the
prompt? One row per evaluation (method x suite x view x training seed) from the
``state_use`` entry of its evaluation JSON (`mtdiff.eval.state_use`); an evaluation written
before the check existed has none and shows as not measured (rerun it to measure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtdiff.eval.state_use import CONDITIONS, MARGIN
from mtdiff.report.planning import label_of
from mtdiff.report.records import EvalRun
from mtdiff.report.table import MISSING, Stat, Table

OLD = "not measured: the evaluation JSON predates the check (rerun the evaluation)"
_KEEP = (*CONDITIONS, *(f"{c}_ci" for c in CONDITIONS), "state_gap", "state_gap_ci",
         "prompt_gap", "prompt_gap_ci", "uses_state", "uses_prompt", "learnt_nothing",
         "verdict_state", "verdict_prompt", "verdict_learnt", "windows", "windows_per_task",
         "baseline", "per_task")


def _order(runs: Sequence[EvalRun]) -> list[EvalRun]:
    return sorted(runs, key=lambda r: (r.suite, r.method, r.view or "", r.seed))


def rows(evals: Sequence[EvalRun]) -> list[dict[str, Any]]:
    """results.json's ``state_use``: per evaluation its three errors, their intervals and
    the verdicts, or ``missing`` saying why there are none."""
    out = []
    for r in _order(evals):
        su = r.summary.get("state_use")
        row: dict[str, Any] = {"suite": r.suite, "method": r.method, "view": r.view,
                               "seed": r.seed}
        if not su or "missing" in su:
            row["missing"] = (su or {}).get("missing", OLD)
        else:
            row.update({k: su.get(k) for k in _KEEP})
        out.append(row)
    return out


def _err(su: dict[str, Any], c: str) -> Stat | str:
    v, ci = su.get(c), su.get(f"{c}_ci")
    return MISSING if v is None else Stat(v, None, ".2f", ci=tuple(ci) if ci else None)


def table(evals: Sequence[EvalRun]) -> Table:
    """The section's table: errors with their intervals and the verdicts in words."""
    body: list[list[Any]] = []
    for r in _order(evals):
        su = r.summary.get("state_use") or {"missing": OLD}
        head = [r.suite, label_of(r.method), r.view or MISSING, r.seed]
        if "missing" in su:
            body.append([*head, MISSING, MISSING, MISSING, su["missing"], MISSING, MISSING])
            continue
        body.append([*head, *(_err(su, c) for c in CONDITIONS), su["verdict_state"],
                     su["verdict_prompt"], su["verdict_learnt"]])
    return Table(
        "state_use", "State use: the executed action's error relative to the task's mean "
        "action, on dataset windows (no environment)",
        ["Suite", "Method", "View", "Seed", "True", "Shuffled history", "Wrong prompt",
         "State", "Prompt", "Learnt"], body,
        notes=["rel_err = sum ||a_pred - a||^2 / sum ||mean_a(task) - a||^2 over a fixed "
               "seeded sample of each training task's windows (eval.state_use_windows per "
               "task) of the dataset view the model trained on; 1.0 = no better than the "
               "task's mean action. [95% interval]: bootstrap over windows, stratified by "
               "task.",
               "True: the window's own history and its task's prompt (task id). Shuffled "
               "history: another window's history, same task. Wrong prompt: another training "
               "task's prompt (task id).",
               f"Uses the state: the interval of shuffled - true lies above 0 and the gap is "
               f">= {MARGIN}; likewise the prompt with wrong prompt - true. Learnt nothing: "
               "the interval of True reaches 1.0 (mtdiff.eval.state_use).",
               "Errors above 1.0 are possible: a stochastic planner that ignores the state "
               "adds its own spread to the mean action's."],
        ci_columns=("True", "Shuffled history", "Wrong prompt"))


def section(evals: Sequence[EvalRun], emit: Any) -> list[str]:
    """The report section's lines (`emit` writes a table's CSV and returns its lines)."""
    if not evals:
        return ["_not run_: no evaluation in the graph (evaluate/<suite>/<method>/...)."]
    return emit(table(evals))
