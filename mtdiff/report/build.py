"""Assemble `<out>/report/`: report.md, one CSV per table, PNG figures; log it to MLflow.

Each section is built from its own inputs; a section whose inputs are absent says
"not run" (and where they would be), one whose inputs are malformed says why, and the
rest of the report is still written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from mtdiff.data.io import atomic_write_text
from mtdiff.report import contracts, paper, plots, tables
from mtdiff.report.sources import EvalRun, datasets, find_evals, latest
from mtdiff.report.table import Table

REPORT_FILE = "report.md"


def _section(title: str, body: Callable[[], list[str]]) -> list[str]:
    """A Markdown section; input errors become a line in it instead of a crash."""
    try:
        lines = body()
    except (contracts.ContractError, KeyError, ValueError, TypeError) as e:
        print(f"[report] {title}: {type(e).__name__}: {e}", file=sys.stderr)
        lines = [f"Could not build from the inputs: {type(e).__name__}: {e}"]
    return [f"## {title}", "", *lines, ""]


def _not_run(what: str, where: Path | str) -> list[str]:
    return [f"_not run_: {what} (expected `{where}`)."]


def _emit(table: Table, dest: Path, files: list[Path]) -> list[str]:
    files.append(table.write_csv(dest))
    return [table.markdown(), f"CSV: `{table.name}.csv`"]


def _records(kind: str, out: Path) -> list[dict] | None:
    """Contract records, or None when the file is absent (malformed raises)."""
    try:
        return contracts.read_records(kind, out)
    except FileNotFoundError:
        return None


def _unique_metaworld(runs: list[EvalRun], kinds: tuple[str, ...]) -> list[EvalRun]:
    """The newest Meta-World run per (kind, view), in kind order."""
    out = []
    for kind in kinds:
        views = dict.fromkeys(r.view for r in runs if r.suite == "metaworld" and r.kind == kind)
        for view in views:
            r = latest(runs, suite="metaworld", kind=kind, view=view)
            if r is not None:
                out.append(r)
    return out


def build_report(out_dir: str | Path, *, preset: str | None = None,
                 dest: str | Path | None = None, read_checkpoints: bool = True) -> Path:
    """Scan a full-reproduction output folder and write its report; returns report.md's path.

    Writes `<dest>/report.md` (default `<out_dir>/report/`), a CSV per table and PNGs of
    Figs. 5, 6 and 7 and of per-task success. `preset` labels our numbers when a checkpoint
    (or a record) does not say which preset produced them; `read_checkpoints=False` skips
    loading checkpoints (no torch import; the view is then the preset's default).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"no output folder at {out}; run `python pipelines/"
                                "full_repro.py --out DIR` first and pass that DIR")
    rep = Path(dest) if dest is not None else out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    runs, problems = find_evals(out, preset=preset, read_checkpoints=read_checkpoints)
    files: list[Path] = []
    label = preset or ", ".join(sorted({r.preset for r in runs})) or "unknown"
    mw_p = _unique_metaworld(runs, ("mtdiff-p", "mtdiff-p-onehot"))
    maze = latest(runs, suite="maze2d", kind="mtdiff-p") or latest(runs, suite="maze2d")

    md = [f"# MTDiff reproduction report: `{out}`", "",
          f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
          f"- preset: `{label}` (per table: the preset each number came from)",
          "- paper: He et al., 'Diffusion Model is an Effective Planner and Data Synthesizer "
          "for Multi-Task Reinforcement Learning', NeurIPS 2023", ""]
    md += ["## Inputs", ""]
    for d in datasets(out):
        md.append(f"- dataset `{d['path']}`: " + (d["error"] if "error" in d else
                  f"{d['suite']}, config_hash `{d['config_hash']}`, source {d['source']}, "
                  f"{d['tasks']} tasks, {d['transitions']:,} transitions"))
    for r in runs:
        used = any(r is x for x in mw_p) or r is maze
        md.append(f"- eval `{r.path}`: {r.suite}, {r.label}, preset `{r.preset}` "
                  f"({r.preset_source}), dataset `{r.dataset_hash or '?'}`"
                  f"{'' if used else ' (older: not used)'}")
    md += [f"- {p}" for p in problems]
    md.append("")

    def t1() -> list[str]:
        if not mw_p:
            return _not_run("no Meta-World evaluation of MTDiff-P / MTDiff-P-onehot",
                            out / "eval" / "metaworld-train-mtdiff-p-*" / "eval-metaworld.json")
        per_task = tables.per_task_success(mw_p)
        files.append(plots.success_per_task(mw_p, rep / "success_per_task.png"))
        return [*_emit(tables.table1(mw_p), rep, files), "",
                "### Per-task success (ours)", "", "![](success_per_task.png)", "",
                *_emit(per_task, rep, files)]

    def fig5() -> list[str]:
        if maze is None:
            return _not_run("no Maze2D evaluation",
                            out / "eval" / "maze2d-train-mtdiff-p-*" / "eval-maze2d.json")
        files.append(plots.fig5_maze2d(maze, rep / "fig5_maze2d.png"))
        return ["![](fig5_maze2d.png)", "", *_emit(tables.fig5_table(maze), rep, files)]

    def t6() -> list[str]:
        p_runs = [r for r in mw_p if r.kind == "mtdiff-p"]
        if not p_runs:
            return _not_run("no Meta-World evaluation of MTDiff-P",
                            out / "eval" / "metaworld-train-mtdiff-p-*" / "eval-metaworld.json")
        return _emit(tables.table6(p_runs), rep, files)

    def t2() -> list[str]:
        recs = _records("table2", out)
        if recs is None:
            paper_only = tables.table2([], "–")
            paper_only.meta["ours"] = "not run"
            return [*_not_run("no offline RL results", contracts.contract_path("table2", out)),
                    "", "The paper's legible cells:", "", paper_only.markdown()]
        return _emit(tables.table2(recs, label), rep, files)

    def t4() -> list[str]:
        recs = _records("quality", out)
        if recs is None:
            return _not_run("no data-quality results", contracts.contract_path("quality", out))
        main, detail = tables.table4(recs, label)
        files.append(detail.write_csv(rep))
        return [*_emit(main, rep, files), f"Per task: `{detail.name}.csv`"]

    def fig6() -> list[str]:
        recs = _records("single_task", out)
        if recs is None:
            return [*_not_run("no single-task augmentation results",
                              contracts.contract_path("single_task", out)), "", paper.FIG6_NOTE]
        files.append(plots.fig6_single_task(recs, rep / "fig6_single_task.png"))
        return ["![](fig6_single_task.png)", "", *_emit(tables.fig6_table(recs, label), rep, files)]

    def fig7() -> list[str]:
        recs = _records("task_count", out)
        if recs is None:
            return [*_not_run("no task-count results", contracts.contract_path("task_count", out)),
                    "", paper.FIG7_NOTE]
        files.append(plots.fig7_task_count(recs, rep / "fig7_task_count.png"))
        return ["![](fig7_task_count.png)", "", *_emit(tables.fig7_table(recs, label), rep, files)]

    for title, body in (("Table 1: multi-task planning, MT50-rand (§5.2)", t1),
                        ("Fig. 5: Maze2D, seen and unseen maps (§5.2)", fig5),
                        ("Table 6: return per task, MTDiff-P (App. I)", t6),
                        ("Table 2: augmentation for offline RL, TD3-BC (§5.3)", t2),
                        ("Table 4: quality of the synthetic data (App. E.2)", t4),
                        ("Fig. 6: multi-task vs single-task MTDiff-S (§5.3)", fig6),
                        ("Fig. 7: MTDiff-S vs number of training tasks (§5.3)", fig7)):
        md += _section(title, body)
    md += ["## Files", "", *[f"- `{f.name}`" for f in files], ""]
    return atomic_write_text(rep / REPORT_FILE, "\n".join(md))


def log_report_to_mlflow(report_dir: str | Path, artifact_path: str = "report") -> bool:
    """Log the report folder (or report.md's folder) as artifacts of the active MLflow run.

    Returns False, logging nothing, when no run is active. mlflow is not imported for
    that check: a run can only be active if this process imported it already.
    """
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or mlflow.active_run() is None:
        return False
    d = Path(report_dir)
    mlflow.log_artifacts(str(d.parent if d.is_file() else d), artifact_path=artifact_path)
    return True
