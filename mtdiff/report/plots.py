"""Figures of the report (matplotlib, Agg backend, PNG): Figs. 5, 6, 7, per-task success.

matplotlib is imported inside each function, so importing this module costs nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.report.contracts import SINGLE_METHODS
from mtdiff.report.sources import EvalRun
from mtdiff.report.tables import fig6_tasks

_COLORS = {"train": "tab:blue", "unseen": "tab:green", "wrong": "tab:red"}
_FIG6_BARS = {"original": ("Original", "tab:gray"),
              "mtdiff-s-single": ("+ MTDiff-S-single", "tab:orange"),
              "mtdiff-s": ("+ MTDiff-S (multi-task)", "tab:blue")}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Save to a temporary name in the folder, then rename: never a half-written PNG."""
    from mtdiff.data.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    _pyplot().close(fig)
    return path


def fig5_maze2d(run: EvalRun, path: str | Path) -> Path:
    """Fig. 5's bar chart: Maze2D success and return per map.

    Training maps (own prompt), unseen maps (own prompt: few-shot adaptation) and the
    wrong-prompt control on the unseen maps; error bars are std over seeds.
    """
    plt = _pyplot()
    bars: list[tuple[str, str, dict[str, float]]] = []  # (label, colour key, stats)
    for key, colour, tag in (("train", "train", ""), ("unseen", "unseen", ""),
                             ("unseen_wrong_prompt", "wrong", "\n(wrong prompt)")):
        for m, v in run.summary.get(key, {}).get("tasks", {}).items():
            bars.append((f"{m}{tag}", colour, v))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(bars) + 2), 7.5), sharex=True)
    x = np.arange(len(bars))
    for ax, metric, scale, ylabel in ((axes[0], "success", 100.0, "success rate (%)"),
                                      (axes[1], "return", 1.0, "episode return")):
        ax.bar(x, [scale * b[2][f"{metric}_mean"] for b in bars],
               yerr=[scale * b[2][f"{metric}_std"] for b in bars], capsize=3,
               color=[_COLORS[b[1]] for b in bars])
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if metric == "success":
            ax.set_ylim(0, 105)
    axes[1].set_xticks(x, [b[0] for b in bars], rotation=45, ha="right", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _COLORS.values()]
    axes[0].legend(handles, ["training map", "unseen map", "unseen, wrong prompt"],
                   fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3,
                   frameon=False)
    fig.suptitle(f"Maze2D, MTDiff-P (preset {run.preset}): mean ± std over "
                 f"{len(run.seeds)} seed(s)", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def fig6_single_task(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Fig. 6: TD3-BC success per task on the original data and augmented by MTDiff-S-single
    or MTDiff-S, grouped bars, std over seeds as error bars (`contracts`, "single_task")."""
    plt = _pyplot()
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        vals[(r["task"], r["method"])].append(100.0 * float(r["success"]))
    tasks = fig6_tasks(records)
    x = np.arange(len(tasks))
    width = 0.8 / len(SINGLE_METHODS)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(tasks) + 1.5), 4))
    for i, m in enumerate(SINGLE_METHODS):
        per = [vals.get((t, m), []) for t in tasks]
        ax.bar(x + (i - (len(SINGLE_METHODS) - 1) / 2) * width,
               [np.mean(v) if v else np.nan for v in per], width,
               yerr=[np.std(v) if len(v) > 1 else 0.0 for v in per], capsize=3,
               label=_FIG6_BARS[m][0], color=_FIG6_BARS[m][1])
    ax.set_xticks(x, tasks, fontsize=8)
    ax.set_ylim(0, 120)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("TD3-BC success rate (%)")
    seeds = sorted({len(v) for v in vals.values()})
    ax.set_title(f"Fig. 6: multi-task vs single-task MTDiff-S ({'/'.join(map(str, seeds))} "
                 "seed(s), mean ± std)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncols=3, frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def fig7_task_count(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Fig. 7: TD3-BC success vs the number of tasks MTDiff-S was trained on, per task,
    mean ± std over seeds (records as in `contracts`, "task_count")."""
    plt = _pyplot()
    by_task: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_task[r["task"]][int(r["num_tasks"])].append(100.0 * float(r["success"]))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    counts: set[int] = set()
    for task, per_n in sorted(by_task.items()):
        ns = sorted(per_n)
        counts |= set(ns)
        ax.errorbar(ns, [np.mean(per_n[n]) for n in ns], yerr=[np.std(per_n[n]) for n in ns],
                    marker="o", capsize=4, label=task)
    ax.set_xticks(sorted(counts))
    ax.margins(x=0.08)
    ax.set_xlabel("tasks MTDiff-S was trained on")
    ax.set_ylabel("TD3-BC success rate (%)")
    ax.set_title("Fig. 7: success vs number of training tasks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def success_per_task(runs: Sequence[EvalRun], path: str | Path) -> Path:
    """Horizontal bars of Meta-World success per task, one bar per model (kind, view),
    error bars std over seeds; tasks in the order evaluated."""
    plt = _pyplot()
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in r.summary["all"]["tasks"] if t not in tasks]
    height = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.2 * len(tasks) * (1 + len(runs)) ** 0.5))
    y = np.arange(len(tasks))
    for i, r in enumerate(runs):
        per = r.summary["all"]["tasks"]
        mean = [100.0 * per[t]["success_mean"] if t in per else np.nan for t in tasks]
        std = [100.0 * per[t]["success_std"] if t in per else 0.0 for t in tasks]
        ax.barh(y + i * height, mean, height=height, xerr=std, capsize=2,
                label=f"{r.label}: {100.0 * r.summary['all']['success_mean']:.1f}%")
    ax.set_yticks(y + height * (len(runs) - 1) / 2, tasks, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel(f"success rate (%), Meta-World, {len(tasks)} tasks")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))
