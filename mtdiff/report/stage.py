"""The report stage: the report of a reproduction's finished jobs, and the offline-RL
contract files beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mtdiff import tracking
from mtdiff.artifacts import Inputs, Report
from mtdiff.config import Config
from mtdiff.report import contracts
from mtdiff.report.build import RESULTS_FILE, build_report
from mtdiff.report.offline_tables import fig6_records
from mtdiff.report.records import load_graph


def run(cfg: Config, inputs: Inputs, out: Path) -> Report:
    """The report of reproduction `out` from the records of `inputs.graph`'s jobs (names,
    or names -> keys: then records of another key are stale): tables with spread and CIs,
    resolved differences, plots, `results.json`; the offline-RL contract files; logged as
    the active MLflow run's artifacts."""
    write_contracts(out, inputs.graph)
    path = build_report(out, preset=cfg.preset, graph=inputs.graph)
    tracking.log_artifact(Path(path).parent, artifact_path="report")
    return Report(Path(path), {"results": str(Path(path).parent / RESULTS_FILE)})


def write_contracts(root: str | Path, graph: Sequence[str] | Mapping[str, str]) -> None:
    """The offline-RL results as contract files (`mtdiff.report.contracts`: Table 2,
    Table 4, Figs. 6 and 7), from the graph's finished offline and quality records
    (`report.records.load_graph`: `graph` is job names, or names -> keys): an export for
    other tools (the report reads the records themselves). Fig. 7's file is merged, so
    records a `sweeps/task_count.py` run wrote there stay."""
    recs = load_graph(root, graph)
    keep = ("task", "seen", "method", "seed", "success", "mean_return", "transitions",
            "episodes", "preset", "num_tasks")
    runs = [{k: r[k] for k in keep if k in r} for r in recs.offline()]
    table2 = [r for r in runs if r["method"] in contracts.METHODS and "num_tasks" not in r]
    # "source": the report shows the file's other records (a sweep's) beside the graph's
    fig7 = [{**r, "method": "mtdiff-s", "source": "graph"} for r in runs if "num_tasks" in r]
    if table2:
        contracts.write_table2(root, table2)
    if recs.quality():
        contracts.write_quality(root, recs.quality())
    if fig6_records(runs):
        contracts.write_single_task(root, fig6_records(runs))
    if fig7:
        contracts.write_task_count(root, fig7, merge=True)
