"""Figures of the report (matplotlib, Agg backend, PNG): per-task success, Maze2D (Fig. 5
and the paths of Figs. 4, 9, 10), Figs. 6 and 7.

Every bar or point is a report cell (`stats.CellStats`); its error bar is the cell's 95%
CI (Student's t over seeds, or the bootstrap over episodes with one seed), none where a
cell has one value. Performance profiles (`aggregates`) carry rliable's bootstrap bands.
matplotlib is imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.data.io import atomic_write
from mtdiff.report.aggregates import Profile
from mtdiff.report.stats import CellStats

CI_NOTE = "error bars: 95% CI"
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
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    _pyplot().close(fig)
    return path


def _bars(cells: Sequence[CellStats | None]) -> tuple[list[float], np.ndarray]:
    """Heights and (2, n) asymmetric error bars from the cells' CIs (0 where none)."""
    h = [c.mean if c is not None else np.nan for c in cells]
    err = np.array([[c.mean - c.ci_low, c.ci_high - c.mean] if c is not None
                    and c.ci_low is not None else [0.0, 0.0] for c in cells]).reshape(-1, 2)
    return h, np.clip(err.T, 0.0, None)


def success_per_task(cells: Mapping[str, Mapping[str, CellStats]], path: str | Path) -> Path:
    """Horizontal bars of Meta-World success per task, one bar per model (label)."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(t for per in cells.values() for t in per))
    n = max(len(cells), 1)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.2 * len(tasks) * (1 + n) ** 0.5))
    y = np.arange(len(tasks))
    for i, (label, per) in enumerate(cells.items()):
        h, err = _bars([per.get(t) for t in tasks])
        ax.barh(y + i * height, h, height=height, xerr=err, capsize=2, label=label)
    ax.set_yticks(y + height * (n - 1) / 2, tasks, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel(f"success rate (%), Meta-World, {len(tasks)} tasks ({CI_NOTE})")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))


def maze_success(cells: Mapping[str, Mapping[str, CellStats]], columns: Sequence[str],
                 path: str | Path) -> Path:
    """Fig. 5's kind of chart: Maze2D success per group of maps (training, unseen with
    own prompt, unseen with a wrong prompt), one bar per method (label)."""
    plt = _pyplot()
    n = max(len(cells), 1)
    width = 0.8 / n
    x = np.arange(len(columns))
    fig, ax = plt.subplots(figsize=(max(5.5, 2.0 * len(columns) + 1.5), 4))
    for i, (label, per) in enumerate(cells.items()):
        h, err = _bars([per.get(c) for c in columns])
        ax.bar(x + (i - (n - 1) / 2) * width, h, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, columns, fontsize=8)
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"Maze2D: success by map group ({CI_NOTE})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncols=max(n, 1), frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def side_by_side(images: Sequence[tuple[str, Path]], path: str | Path) -> Path:
    """The methods' Maze2D path figures (each evaluation's `maze2d-paths.png`) in one
    image, one column per method, titled by method."""
    plt = _pyplot()
    pics = [plt.imread(str(img)) for _, img in images]  # (H, W, 4) each
    aspect = max(p.shape[0] / p.shape[1] for p in pics)
    fig, axes = plt.subplots(1, len(pics), figsize=(7 * len(pics), 7 * aspect + 0.6),
                             squeeze=False)
    for ax, (label, _), pic in zip(axes[0], images, pics, strict=True):
        ax.imshow(pic)
        ax.set_axis_off()
        ax.set_title(label, fontsize=12)
    fig.tight_layout()
    return _save(fig, Path(path))


def fig6_single_task(cells: Mapping[str, Mapping[str, CellStats]], tasks: Sequence[str],
                     path: str | Path) -> Path:
    """Fig. 6: TD3-BC success per task on the original data and augmented by
    MTDiff-S-single or MTDiff-S, grouped bars (cells by method, then task)."""
    plt = _pyplot()
    x = np.arange(len(tasks))
    width = 0.8 / len(_FIG6_BARS)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(tasks) + 1.5), 4))
    for i, (m, (label, colour)) in enumerate(_FIG6_BARS.items()):
        h, err = _bars([cells.get(m, {}).get(t) for t in tasks])
        ax.bar(x + (i - (len(_FIG6_BARS) - 1) / 2) * width, h, width, yerr=err, capsize=3,
               label=label, color=colour)
    ax.set_xticks(x, tasks, fontsize=8)
    ax.set_ylim(0, 120)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("TD3-BC success rate (%)")
    ax.set_title(f"Fig. 6: multi-task vs single-task MTDiff-S ({CI_NOTE})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncols=3, frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def fig7_task_count(cells: Mapping[str, Mapping[int, CellStats]], path: str | Path) -> Path:
    """Fig. 7: TD3-BC success vs the number of tasks MTDiff-S was trained on, per task."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    counts: set[int] = set()
    for task, per_n in sorted(cells.items()):
        ns = sorted(per_n)
        counts |= set(ns)
        h, err = _bars([per_n[n] for n in ns])
        ax.errorbar(ns, h, yerr=err, marker="o", capsize=4, label=task)
    ax.set_xticks(sorted(counts))
    ax.margins(x=0.08)
    ax.set_xlabel("tasks MTDiff-S was trained on")
    ax.set_ylabel("TD3-BC success rate (%)")
    ax.set_title(f"Fig. 7: success vs number of training tasks\n({CI_NOTE})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def performance_profiles(panels: Sequence[tuple[str, str, Mapping[str, Profile]]],
                         path: str | Path) -> Path:
    """rliable's performance profiles: per panel (title, x label, {method label: profile})
    the fraction of seed x task scores above tau, with its 95% stratified bootstrap band."""
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, xlabel, profiles) in zip(axes.flat, panels, strict=False):
        for label, p in profiles.items():
            line, = ax.plot(p.taus, p.fraction, label=label)
            if p.ci_low is not None:
                ax.fill_between(p.taus, p.ci_low, p.ci_high, alpha=0.2, color=line.get_color())
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("fraction of scores > tau", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.suptitle("Performance profiles (bands: 95% stratified bootstrap over seeds)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))
