"""Assemble `<out>/report/` from the graph's job records: report.md, report.html (the same,
one self-contained page), results.json, one CSV per table, PNG figures; log it to MLflow,
with the headline cells as metrics of the reproduction's run (`headline`).

Each section is built from its own records; a section without any says "not run" (the
tables still show the paper's numbers), one whose inputs are malformed says why, and
the rest of the report is still written.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mtdiff import tracking
from mtdiff.data.io import atomic_write_json, atomic_write_text
from mtdiff.report import (
    contracts,
    offline_tables,
    paper,
    planning,
    planning_aggregates,
    plots,
    reference,
    state_use,
)
from mtdiff.report.cells import Results
from mtdiff.report.claims import Claim, claims_markdown
from mtdiff.report.headline import headline_metrics
from mtdiff.report.html import HTML_FILE, write_html
from mtdiff.report.records import EvalRun, GraphRecords, load_graph, local_path
from mtdiff.report.table import Table
from mtdiff.tracking import remote

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
STATS_NOTE = ("Every cell of ours: mean ± std [95% CI], in the table's unit. Spread and CI "
              "are over training seeds (TD3-BC seeds for the offline-RL tables) when a cell "
              "has two or more: Student's t interval, which holds its 95% at 2-3 seeds "
              "for normally spread seed scores (less for skewed ones: "
              "benchmarks/ci_coverage.py) and is wide there (with 2 seeds, ± 12.7 "
              "standard errors); else over the "
              "evaluation episodes of its one seed, resampled within each task (percentile "
              "bootstrap, 10,000 resamples, fixed seed), which leaves out the spread "
              "between training seeds. std with n - 1. The n column of each table says "
              "which, and how many seeds and episodes stand behind a cell. Every cell is "
              "in results.json (`ci_method`).")


def _section(title: str, body: Callable[[], list[str]]) -> list[str]:
    """A Markdown section; input errors become a line in it instead of a crash."""
    try:
        lines = body()
    except (contracts.ContractError, KeyError, ValueError, TypeError) as e:
        print(f"[report] {title}: {type(e).__name__}: {e}", file=sys.stderr)
        lines = [f"Could not build from the inputs: {type(e).__name__}: {e}"]
    return [f"## {title}", "", *lines, ""]


def _not_run(what: str, where: str) -> list[str]:
    return [f"_not run_: {what} ({where})."]


class _Report:
    """The sections of one report (they share the records, the results and the files)."""

    def __init__(self, recs: GraphRecords, rep: Path, res: Results) -> None:
        self.recs, self.rep, self.res = recs, rep, res
        self.evals: list[EvalRun] = recs.evals()
        self.refs = reference.load(recs)  # suite -> its reference rows
        self.files: list[Path] = []
        self.claims: list[Claim] = []

    def emit(self, table: Table) -> list[str]:
        self.files.append(table.write_csv(self.rep))
        return [table.markdown(), f"CSV: `{table.name}.csv`"]

    def claim(self, claims: list[Claim]) -> list[str]:
        self.claims += claims
        return claims_markdown(claims)

    def has(self, suite: str) -> bool:
        return any(r.suite == suite for r in self.evals)

    # --- planning -----------------------------------------------------------------------
    def table1(self) -> list[str]:
        table, claims = planning.table1(self.evals, self.res)
        ref = self.refs.get("metaworld")
        reference.append_rows(table, reference.view_rows(ref, self.res, "table1"))
        for view in planning.VIEWS:
            claims += reference.against_zero("Table 1", view, reference.method_cells(
                self.evals, "metaworld", "train", view=view), ref, "train")
        lines = [] if self.has("metaworld") else _not_run(
            "no Meta-World evaluation in the graph",
            "evaluate/metaworld/<method>/<view>/s<seed>") + [""]
        lines += [*self.emit(table), "", *self.claim(claims)]
        if self.has("metaworld"):
            per_task, cells = planning.per_task_success(self.evals, self.res)
            reference.append_columns(per_task, reference.task_columns(
                ref, self.res, "success_per_task"))
            self.files.append(plots.success_per_task(cells, self.rep / "success_per_task.png"))
            lines += ["", "### Per-task success (ours)", "", "![](success_per_task.png)", "",
                      *self.emit(per_task)]
        return lines

    def table3(self) -> list[str]:
        table, claims = planning.table3(self.evals, self.res)
        reference.append_rows(table, reference.view_rows(self.refs.get("metaworld"), self.res,
                                                         "table3"))
        return [*self.emit(table), "", *self.claim(claims)]

    def maze(self) -> list[str]:
        if not self.has("maze2d"):
            return _not_run("no Maze2D evaluation in the graph", "evaluate/maze2d/<method>/s<seed>")
        summary, detail, claims, cells = planning.maze(self.evals, self.res)
        ref = self.refs.get("maze2d")
        reference.append_rows(summary, reference.maze_rows(ref, self.res, planning.MAZE_GROUPS))
        reference.append_columns(detail, reference.task_columns(
            ref, self.res, "maze2d_per_map", reference.MAZE_METRICS, views=reference.VIEWS[:1]))
        for group, _, col in planning.MAZE_GROUPS[:2]:
            claims += reference.against_zero("Maze2D", col, reference.method_cells(
                self.evals, "maze2d", group), ref, group)
        cols = [c for *_, c in planning.MAZE_GROUPS]
        self.files.append(plots.maze_success(
            {planning.label_of(m): c for m, c in cells.items()}, cols,
            self.rep / "fig5_maze2d.png"))
        lines = ["![](fig5_maze2d.png)", "", *self.emit(summary), "", *self.claim(claims)]
        paths = self._paths()
        if paths:
            self.files.append(plots.side_by_side(paths, self.rep / "maze2d_paths.png"))
            lines += ["", "### Paths (Figs. 4, 9, 10's kind): each map, own prompt, first "
                      "evaluation seed, of each method's first training seed", "",
                      "![](maze2d_paths.png)"]
        return [*lines, "", *self.emit(detail)]

    def _paths(self) -> list[tuple[str, Path]]:
        """Per Maze2D method, the paths figure its evaluation wrote beside its JSON."""
        out = []
        for m in planning.methods_of(self.evals, "maze2d", ("mtdiff-p", "promptdt")):
            runs = sorted(planning.select(self.evals, "maze2d", m), key=lambda r: r.seed)
            img = runs[0].path.parent / "maze2d-paths.png"
            if img.exists():
                out.append((f"{planning.label_of(m)} (training seed {runs[0].seed})", img))
        return out

    def table5(self) -> list[str]:
        table, claims = planning.table5(self.evals, self.res)
        reference.append_rows(table, reference.table5_rows(
            self.refs, self.res, paper.TABLE5_SUITES, ("Cheetah-vel", "Ant-dir")))
        for suite in paper.TABLE5_SUITES:
            for group in ("train", "heldout"):
                claims += reference.against_zero(
                    "Table 5", f"{suite}, {group} tasks", reference.method_cells(
                        self.evals, suite, group, reference.RETURN),
                    self.refs.get(suite), group, reference.RETURN)
        lines = [] if any(self.has(s) for s in paper.TABLE5_SUITES) else _not_run(
            "no Cheetah-vel or Ant-dir evaluation in the graph",
            "evaluate/cheetah-vel/<method>/s<seed>, evaluate/ant-dir/<method>/s<seed>") + [""]
        return [*lines, *self.emit(table), "", *self.claim(claims)]

    def table6(self) -> list[str]:
        if not planning.select(self.evals, "metaworld", "mtdiff-p"):
            return _not_run("no Meta-World evaluation of MTDiff-P in the graph",
                            "evaluate/metaworld/mtdiff-p/<view>/s<seed>")
        table = planning.table6(self.evals, self.res)
        reference.append_columns(table, reference.task_columns(
            self.refs.get("metaworld"), self.res, "table6", ((reference.RETURN, "return"),)))
        return self.emit(table)

    # --- aggregates over seeds x tasks (rliable) ------------------------------------------
    def aggregates(self) -> list[str]:
        comps = planning_aggregates.comparisons(self.evals)
        if not comps:
            return _not_run("no Meta-World, Cheetah-vel or Ant-dir evaluation in the graph",
                            "evaluate/<suite>/<method>/...")
        lines: list[str] = [planning_aggregates.NOTE, "",
                            f"![]({planning_aggregates.PROFILE_FILE})", ""]
        panels = []
        for c in comps:
            table, entry, profiles = planning_aggregates.summarize(c)
            self.res.aggregates.append(entry)
            panels.append((c.title, "tau (" + ("success, %" if c.metric == "success"
                                               else "return") + ")", profiles))
            lines += [*self.emit(table), ""]
        self.files.append(plots.performance_profiles(
            panels, self.rep / planning_aggregates.PROFILE_FILE))
        return lines

    # --- offline RL ---------------------------------------------------------------------
    def table2(self) -> list[str]:
        recs = [r for r in self.recs.offline() if r["method"] in paper.TABLE2_METHODS
                and "num_tasks" not in r]
        if not recs:
            paper_only = offline_tables.table2([], Results(self.res.preset))
            return [*_not_run("no offline RL results", "offline/<task>/<method>/s<seed> jobs"),
                    "", "The paper's legible cells:", "", paper_only.markdown()]
        return self.emit(offline_tables.table2(recs, self.res))

    def table4(self) -> list[str]:
        recs = self.recs.quality()
        if not recs:
            return _not_run("no data-quality results", "quality/<task> jobs")
        main, detail = offline_tables.table4(recs, self.res)
        self.files.append(detail.write_csv(self.rep))
        return [*self.emit(main), f"Per task: `{detail.name}.csv`"]

    def fig6(self) -> list[str]:
        recs = offline_tables.fig6_records(self.recs.offline())
        if not recs:
            return [*_not_run("no single-task augmentation results",
                              "offline/<task>/mtdiff-s-single/s<seed> jobs"), "",
                    paper.FIG6_NOTE]
        table, cells = offline_tables.fig6_table(recs, self.res)
        self.files.append(plots.fig6_single_task(cells, offline_tables.fig6_tasks(recs),
                                                 self.rep / "fig6_single_task.png"))
        return ["![](fig6_single_task.png)", "", *self.emit(table)]

    def fig7(self) -> list[str]:
        try:
            sweep = contracts.read_records("task_count", self.recs.root)
        except FileNotFoundError:
            sweep = []
        recs = offline_tables.fig7_records(self.recs.offline(), sweep)
        if not recs:
            return [*_not_run("no task-count results", "experiment.task_counts jobs or "
                              f"`sweeps/task_count.py` -> {contracts.TASK_COUNT_FILE}"), "",
                    paper.FIG7_NOTE]
        table, cells = offline_tables.fig7_table(recs, self.res)
        self.files.append(plots.fig7_task_count(cells, self.rep / "fig7_task_count.png"))
        return ["![](fig7_task_count.png)", "", *self.emit(table)]


def _inputs(recs: GraphRecords, evals: list[EvalRun]) -> list[str]:
    """What the report read: the graph's jobs by kind and state, datasets, evaluations."""
    kinds = Counter(r["kind"] for r in recs.done.values())
    lines = [f"- graph: {len(recs.names)} jobs, {len(recs.done)} finished ("
             + ", ".join(f"{v} {k}" for k, v in kinds.items()) + ")"]
    for names, what in ((recs.missing, "without a finished record** (failed, blocked or not "
                         "run"), (recs.stale, "with a stale record** (made by another config "
                                  "than this graph's, or its outputs are gone")):
        if names:
            shown = ", ".join(f"`{n}`" for n in names[:12])
            more = f" and {len(names) - 12} more" if len(names) > 12 else ""
            lines.append(f"- **{len(names)} jobs {what}; their cells are absent): "
                         f"{shown}{more}")
    for r in recs.of_kind("collect"):
        res = r["result"]
        size = res.get("transitions")
        where = local_path(res.get("dataset", "?"), recs.root)
        lines.append(f"- dataset `{where}` (`{r['name']}`, hash `{res.get('hash')}`"
                     f"): {len(res.get('tasks', []))} tasks"
                     + (f", {size:,} transitions" if isinstance(size, int) else ""))
    for e in evals:
        s = e.eval_settings
        lines.append(f"- `{e.job}`: `{e.path}` ({s.get('episodes', '?')} episodes x eval "
                     f"seeds {s.get('seeds', '?')} per task)")
    lines += [f"- problem: {p}" for p in recs.problems]
    return lines


def build_report(out_dir: str | Path, *, preset: str | None = None,
                 graph: Sequence[str] | Mapping[str, str] | None = None,
                 dest: str | Path | None = None) -> Path:
    """Read the records of `graph`'s jobs (names, or names -> keys: a record of another key
    is stale; default: `<out_dir>/graph.json`'s) and write the report; returns report.md's
    path.

    Writes `<dest>/report.md` (default `<out_dir>/report/`), `report.html` (the same with
    the figures inline), `results.json` (every cell: mean, std, CI, seeds, episodes, the
    paper's number; the resolved differences), a CSV per table and the figures. `preset`
    labels our numbers (default: the presets the records name, else "unknown").

    Inside a graph job's MLflow run (the report job), the headline cells go to the
    reproduction's parent run as metrics, with report.html (`publish_to_parent`).
    """
    recs = load_graph(out_dir, graph)
    rep = Path(dest) if dest is not None else recs.root / "report"
    rep.mkdir(parents=True, exist_ok=True)
    label = preset or ", ".join(recs.presets()) or "unknown"
    res = Results(label)
    r = _Report(recs, rep, res)
    md = [f"# MTDiff reproduction report: `{recs.root}`", "",
          f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
          f"- preset: `{label}`",
          "- paper: He et al., 'Diffusion Model is an Effective Planner and Data Synthesizer "
          "for Multi-Task Reinforcement Learning', NeurIPS 2023",
          f"- statistics: {STATS_NOTE}", "", "## Inputs", "", *_inputs(recs, r.evals), ""]
    for title, body in (("Table 1: multi-task planning, MT50-rand (§5.2)", r.table1),
                        ("Table 3: GPT-2 vs U-Net backbone (App. C)", r.table3),
                        ("Fig. 5: Maze2D, seen and unseen maps (§5.2, App. D)", r.maze),
                        ("Table 5: Cheetah-vel and Ant-dir, MTDiff-P vs PromptDT (App. H)",
                         r.table5),
                        ("Table 6: return per task, MTDiff-P (App. I)", r.table6),
                        ("State use: does each policy act on the state and the prompt?",
                         lambda: state_use.section(r.evals, r.emit)),
                        ("Aggregates over seeds x tasks: IQM, probability of improvement, "
                         "performance profiles (rliable)", r.aggregates),
                        ("Table 2: augmentation for offline RL, TD3-BC (§5.3)", r.table2),
                        ("Table 4: quality of the synthetic data (App. E.2)", r.table4),
                        ("Fig. 6: multi-task vs single-task MTDiff-S (§5.3)", r.fig6),
                        ("Fig. 7: MTDiff-S vs number of training tasks (§5.3)", r.fig7)):
        md += _section(title, body)
    res.differences = [c.as_dict() for c in r.claims]
    r.files.append(atomic_write_json(rep / RESULTS_FILE, {
        **res.as_dict(), "reference": reference.results(r.refs),
        "state_use": state_use.rows(r.evals)}))
    md += ["## Files", "", f"- `{HTML_FILE}`: this report as one page, figures inline",
           *[f"- `{f.name}`" for f in r.files], ""]
    path = atomic_write_text(rep / REPORT_FILE, "\n".join(md))
    write_html(path)
    publish_to_parent(rep)
    return path


def publish_to_parent(report_dir: str | Path) -> bool:
    """Log the report's headline cells (`headline.headline_metrics`) as metrics of the
    active run's parent, with report.html and results.json as its artifacts under
    ``report/``: inside the report job of a reproduction, that parent is the
    reproduction's run, where two reproductions are compared. Returns False, logging
    nothing, when no run is active or it has no parent."""
    parent = remote.parent_run_id()
    if parent is None:
        return False
    d = Path(report_dir)
    results = json.loads((d / RESULTS_FILE).read_text())
    remote.log_to_run(parent, headline_metrics(results),
                               [d / HTML_FILE, d / RESULTS_FILE], artifact_path="report")
    return True


def log_report_to_mlflow(report_dir: str | Path, artifact_path: str = "report") -> bool:
    """Log the report folder (or report.md's folder) as artifacts of the active MLflow run,
    and its headline cells as the run's metrics (`headline.headline_metrics`).

    Returns False, logging nothing, when no run is active (mlflow is then not imported).
    """
    if tracking.active() is None:
        return False
    d = Path(report_dir)
    d = d.parent if d.is_file() else d
    tracking.log_artifact(d, artifact_path=artifact_path)
    if (d / RESULTS_FILE).is_file():
        tracking.log_metrics(headline_metrics(json.loads((d / RESULTS_FILE).read_text())))
    return True
