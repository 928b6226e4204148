"""The budget curve's table and figure: each method's score against its training budget, the
MTDiff-P - MTBC gap per budget with its interval, and whether the gap grows with compute.

Input: the records of `sweeps/budget_curve.py`'s trials (one per suite, method, budget and
training seed: ``params`` with ``model.kind``, ``train.steps``, ``train.seed``; ``metrics``
with ``score``, ``score_<group>``, ``samples``). Intervals are over training seeds with the
report's own functions (`mtdiff.report.stats`); a gap is paired by seed, and so is the change
of the gap from the smallest to the largest budget ((P - B) at the largest minus (P - B) at
the smallest, per seed): the gap "grows" only where that interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.report import stats

PLANNER, BASELINE = "mtdiff-p", "mtbc"


def method_label(params: Mapping[str, Any], arm: str = "") -> str:
    """A row's method: the model kind, with the arm when it is not the default one."""
    kind = str(params["model.kind"])
    return f"{kind} ({arm})" if arm else kind


def cells(records: Iterable[dict[str, Any]], suite: str, arm: str = ""
          ) -> dict[tuple[str, str, str, int], dict[int, float]]:
    """(suite, group, method, steps) -> {training seed: score}; group "all" is the score
    over every evaluated task, the others the suite's groups (train / heldout)."""
    out: dict[tuple[str, str, str, int], dict[int, float]] = {}
    for rec in records:
        if rec.get("status", "finished") != "finished":
            continue
        p, m = rec["params"], rec["metrics"]
        # Groups, where the suite has them: methods that cannot act on held-out tasks (task
        # ids) have no "heldout", so a score over all tasks would mix unlike sets.
        grouped = any(name.startswith("score_") for name in m)
        for name, value in m.items():
            if (name == "score" and not grouped) or name.startswith("score_"):
                group = "all" if name == "score" else name[len("score_"):]
                key = (suite, group, method_label(p, arm), int(p["train.steps"]))
                out.setdefault(key, {})[int(p["train.seed"])] = float(value)
    return out


def task_cells(records: Iterable[dict[str, Any]], suite: str, arm: str = ""
               ) -> dict[tuple[str, str, str, int], dict[int, float]]:
    """(suite, task, method, steps) -> {training seed: the task's score}, from the trials'
    ``task.<name>`` metrics: which tasks a method learns, not only its mean over them."""
    out: dict[tuple[str, str, str, int], dict[int, float]] = {}
    for rec in records:
        if rec.get("status", "finished") != "finished":
            continue
        p = rec["params"]
        for name, value in rec["metrics"].items():
            if name.startswith("task."):
                key = (suite, name[len("task."):], method_label(p, arm), int(p["train.steps"]))
                out.setdefault(key, {})[int(p["train.seed"])] = float(value)
    return out


def task_table(task_scores: Mapping[tuple[str, str, str, int], Mapping[int, float]],
               dataset: Mapping[tuple[str, str], float] | None = None
               ) -> list[dict[str, Any]]:
    """One row per (suite, task, method, budget): seeds, mean, std, 95% interval over
    training seeds, and the dataset's own score on the task where known."""
    rows = []
    for (suite, task, method, steps), units in sorted(task_scores.items()):
        st = stats.summarize(units, unit="seeds")
        rows.append({"suite": suite, "task": task, "method": method, "steps": steps,
                     "dataset": (dataset or {}).get((suite, task)), **st.as_dict()})
    return rows


def task_markdown(rows: list[dict[str, Any]]) -> str:
    """The per-task table: each task's score per method and budget, with the dataset's."""
    lines = ["| suite | task | method | steps | seeds | mean ± std | 95% CI | dataset |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        std = "" if r["std"] is None else f" ± {_fmt(r['std'])}"
        ci = "-" if r["ci_low"] is None else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        lines.append(f"| {r['suite']} | {r['task']} | {r['method']} | {r['steps']} | "
                     f"{len(r['seeds'])} | {_fmt(r['mean'])}{std} | {ci} | "
                     f"{_fmt(r['dataset'])} |")
    return "\n".join(lines) + "\n"


def dataset_per_task(doc: dict[str, Any], suite: str, view: str) -> dict[tuple[str, str], float]:
    """(suite, task) -> the dataset view's own success rate (or mean return) on that task,
    from a reference evaluation (`mtdiff.eval.reference.run`)."""
    out = {}
    for task, views in doc["dataset"]["tasks"].items():
        if view in views:
            t = views[view]
            out[(suite, task)] = float(t["success_rate"] if t["success_rate"] is not None
                                       else t["mean_return"])
    return out


def samples_of(records: Iterable[dict[str, Any]], suite: str) -> dict[tuple[str, int], float]:
    """(suite, training steps) -> training samples (steps x batch), as the trials recorded
    them. Keyed by suite too: suites train at different batches (MT10's is 5x
    Cheetah-vel's at `local`), so the same steps are different samples."""
    return {(suite, int(r["params"]["train.steps"])): float(r["metrics"]["samples"])
            for r in records if "samples" in r.get("metrics", {})}


def table(cell_scores: Mapping[tuple[str, str, str, int], Mapping[int, float]],
          samples: Mapping[tuple[str, int], float]) -> list[dict[str, Any]]:
    """One row per (suite, group, method, budget): seeds, mean, std, 95% interval."""
    rows = []
    for (suite, group, method, steps), units in sorted(cell_scores.items()):
        st = stats.summarize(units, unit="seeds")
        rows.append({"suite": suite, "group": group, "method": method, "steps": steps,
                     "samples": samples.get((suite, steps)), **st.as_dict()})
    return rows


def gaps(cell_scores: Mapping[tuple[str, str, str, int], Mapping[int, float]],
         a: str = PLANNER, b: str = BASELINE) -> list[dict[str, Any]]:
    """A - B per (suite, group, budget), paired by seed, and per (suite, group) the change
    of that gap from the smallest to the largest budget both methods have."""
    rows: list[dict[str, Any]] = []
    by_group: dict[tuple[str, str], dict[int, dict[int, float]]] = {}
    for (suite, group, method, steps), units in sorted(cell_scores.items()):
        if method != a or (suite, group, b, steps) not in cell_scores:
            continue
        other = cell_scores[(suite, group, b, steps)]
        d = stats.difference(stats.summarize(units), stats.summarize(other))
        common = sorted(set(units) & set(other))
        by_group.setdefault((suite, group), {})[steps] = {s: units[s] - other[s]
                                                          for s in common}
        rows.append({"suite": suite, "group": group, "steps": steps, "kind": "gap",
                     "a": a, "b": b, "seeds": common, **_diff(d)})
    for (suite, group), per_steps in by_group.items():
        if len(per_steps) < 2:
            continue
        lo, hi = min(per_steps), max(per_steps)
        common = sorted(set(per_steps[lo]) & set(per_steps[hi]))
        if len(common) < 2:
            continue
        change = {s: per_steps[hi][s] - per_steps[lo][s] for s in common}
        d = stats.difference(stats.summarize(change), stats.summarize({s: 0.0 for s in common}))
        rows.append({"suite": suite, "group": group, "steps": hi, "from_steps": lo,
                     "kind": "gap_change", "a": a, "b": b, "seeds": common, **_diff(d)})
    return rows


def versus_reference(cell_scores: Mapping[tuple[str, str, str, int], Mapping[int, float]],
                     reference: Iterable[dict[str, Any]], name: str = "zero action"
                     ) -> list[dict[str, Any]]:
    """Each cell minus a reference policy's score in its group (standing still by default),
    with the t interval over the cell's training seeds: the reference is one fixed policy
    on the same evaluation jobs, so its value is taken as given."""
    ref = {(r["suite"], r["group"]): r["mean"] for r in reference if r["method"] == name}
    rows = []
    for (suite, group, method, steps), units in sorted(cell_scores.items()):
        if (suite, group) not in ref:
            continue
        base = ref[(suite, group)]
        d = stats.difference(stats.summarize({s: v - base for s, v in units.items()}),
                             stats.summarize({s: 0.0 for s in units})) if len(units) > 1 else None
        rows.append({"suite": suite, "group": group, "method": method, "steps": steps,
                     "versus": name, "seeds": sorted(units), **_diff(d),
                     "mean": round(float(np.mean(list(units.values()))) - base, 6)})
    return rows


def _diff(d: stats.DiffStats | None) -> dict[str, Any]:
    if d is None:
        return {"mean": None, "ci_low": None, "ci_high": None, "resolved": False}
    return {"mean": round(d.mean, 6), "ci_low": round(d.ci_low, 6),
            "ci_high": round(d.ci_high, 6), "resolved": d.resolved}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if abs(x) < 1e-3 else f"{x:.{digits}f}"


def markdown(rows: list[dict[str, Any]], gap_rows: list[dict[str, Any]],
             reference: list[dict[str, Any]] = (),
             versus: list[dict[str, Any]] = ()) -> str:
    """The curve as markdown: scores, reference rows, each cell minus standing still, the
    MTDiff-P - MTBC gaps and the gap's change."""
    lines = ["| suite | group | method | steps | samples | seeds | mean ± std | 95% CI |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        std = "" if r["std"] is None else f" ± {_fmt(r['std'])}"
        ci = "-" if r["ci_low"] is None else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        samples = "-" if r["samples"] is None else f"{r['samples']:.3g}"
        lines.append(f"| {r['suite']} | {r['group']} | {r['method']} | {r['steps']} | "
                     f"{samples} | {len(r['seeds'])} | {_fmt(r['mean'])}{std} | {ci} |")
    for r in reference:
        lines.append(f"| {r['suite']} | {r['group']} | *{r['method']}* (reference) | - | - | "
                     f"- | {_fmt(r['mean'])} | - |")
    if versus:
        lines += ["", "| suite | group | method | steps | minus | seeds | mean | 95% CI | "
                  "resolved |", "|---|---|---|---|---|---|---|---|---|"]
        for v in versus:
            ci = "-" if v["ci_low"] is None else f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
            lines.append(f"| {v['suite']} | {v['group']} | {v['method']} | {v['steps']} | "
                         f"{v['versus']} | {len(v['seeds'])} | {_fmt(v['mean'])} | {ci} | "
                         f"{'yes' if v['resolved'] else 'no'} |")
    lines += ["", "| suite | group | difference | seeds | mean | 95% CI | resolved |",
              "|---|---|---|---|---|---|---|"]
    for g in gap_rows:
        ab = f"{g.get('a', PLANNER)} - {g.get('b', BASELINE)}"
        what = (f"{ab} at {g['steps']} steps" if g["kind"] == "gap"
                else f"({ab}) at {g['steps']} minus at {g['from_steps']} steps")
        ci = "-" if g["ci_low"] is None else f"[{_fmt(g['ci_low'])}, {_fmt(g['ci_high'])}]"
        lines.append(f"| {g['suite']} | {g['group']} | {what} | {len(g['seeds'])} | "
                     f"{_fmt(g['mean'])} | {ci} | {'yes' if g['resolved'] else 'no'} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, Any]], path: str | Path,
           reference: list[dict[str, Any]] = ()) -> Path:
    """Score against training samples (log x), one panel per (suite, group), one line per
    method with its 95% interval; reference scores as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["suite"], r["group"]) for r in rows})
    color = {m: f"C{i}" for i, m in enumerate(sorted({r["method"] for r in rows}))}
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.6),
                             squeeze=False)
    for ax, (suite, group) in zip(axes.flat, panels, strict=False):
        sel = [r for r in rows if (r["suite"], r["group"]) == (suite, group)]
        for method in sorted({r["method"] for r in sel}):
            pts = sorted((r for r in sel if r["method"] == method),
                         key=lambda r: r["samples"] or r["steps"])
            x = [r["samples"] or r["steps"] for r in pts]
            y = [r["mean"] for r in pts]
            ax.plot(x, y, marker="o", label=method, color=color[method])
            lo = [r["ci_low"] if r["ci_low"] is not None else r["mean"] for r in pts]
            hi = [r["ci_high"] if r["ci_high"] is not None else r["mean"] for r in pts]
            ax.fill_between(x, lo, hi, alpha=0.2, color=color[method])
        for i, ref in enumerate(r for r in reference if (r["suite"], r["group"]) == (suite,
                                                                                      group)):
            ax.axhline(ref["mean"], ls="--", lw=1, color=("0.3", "0.6", "C9")[i % 3],
                       label=f"{ref['method']} (reference)")
        ax.set_xscale("log")
        ax.set_xlabel("training samples (steps x batch)")
        ax.set_ylabel("score")
        ax.set_title(f"{suite}: {group}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reference_rows(doc: dict[str, Any], suite: str, view: str) -> list[dict[str, Any]]:
    """What learning nothing scores, per group, from a reference evaluation
    (`mtdiff.eval.reference.run`): the zero action and a uniform random policy on the same
    jobs as the methods, and the dataset's own mean (the view's episodes of the training
    tasks; a held-out task's prompt policy, since it has no episodes in the data)."""
    rows = []
    policies = doc["summary"]["policies"]
    for kind, summary in sorted(policies.items()):  # one order, computed or read back
        success = summary["all"]["success_mean"] is not None
        for group in ("train", "heldout", "unseen"):
            if group in summary:
                value = summary[group]["success_mean" if success else "return_mean"]
                rows.append({"suite": suite, "group": group, "mean": float(value),
                             "method": kind.replace("-", " ")})
    data = doc["dataset"]
    per_task = [v[view] for v in data["tasks"].values() if view in v]
    if per_task:
        key = "success_rate" if per_task[0]["success_rate"] is not None else "mean_return"
        rows.append({"suite": suite, "group": "train", "method": f"dataset ({view}, mean)",
                     "mean": float(np.mean([t[key] for t in per_task]))})
    held = [v["return"] for v in data.get("prompt_policy", {}).values()]
    if held:
        rows.append({"suite": suite, "group": "heldout", "method": "prompt policy (mean)",
                     "mean": float(np.mean(held))})
    return rows
