"""The report: the paper's tables and figures with its numbers beside ours (DESIGN.md),
read from the experiment graph's job records, every cell with its spread and 95% CI.

    paper.py           the paper's numbers as data (Tables 1-6; what our copy lost)
    records.py         the graph's job records by name (`Layout.job_record`), evaluations
    stats.py           mean, std, the CI (t over seeds, bootstrap over episodes), the CI
                       of a difference (paired t, Welch's t)
    aggregates.py      rliable's IQM, probability of improvement, performance profiles
    planning_aggregates.py  those over Tables 1 and 5's seed x task scores
    cells.py           cells from records; `Results` (every cell, for results.json)
    claims.py          the paper's orderings tested on our numbers (resolved differences)
    table.py           a table type rendering Markdown and CSV from the same cells
    planning.py        Tables 1, 3, 5, 6, per-task success, Maze2D (Fig. 5)
    offline_tables.py  Tables 2, 4, Figs. 6, 7 (TD3-BC and quality records)
    contracts.py       JSON files of the offline-RL results (written by the report job and
                       by `sweeps/task_count.py`, whose Fig. 7 records the report reads)
    plots.py           per-task success, Maze2D, Figs. 6, 7 as PNGs (CI error bars)
    build.py           `build_report` (report.md, results.json, CSVs, PNGs),
                       `log_report_to_mlflow`

Usage::

    from mtdiff.report import build_report, log_report_to_mlflow
    path = build_report("runs/repro-local", preset="local")   # reads runs/repro-local/graph.json
    log_report_to_mlflow(path.parent)                         # if an MLflow run is active
"""

from mtdiff.report.build import RESULTS_FILE, build_report, log_report_to_mlflow
from mtdiff.report.contracts import (
    QUALITY_FILE,
    SINGLE_TASK_FILE,
    TABLE2_FILE,
    TASK_COUNT_FILE,
    ContractError,
    read_records,
    write_quality,
    write_single_task,
    write_table2,
    write_task_count,
)
from mtdiff.report.records import GraphError, graph_names

__all__ = [
    "QUALITY_FILE", "RESULTS_FILE", "SINGLE_TASK_FILE", "TABLE2_FILE", "TASK_COUNT_FILE",
    "ContractError", "GraphError", "build_report", "graph_names", "log_report_to_mlflow",
    "read_records", "write_quality", "write_single_task", "write_table2", "write_task_count",
]
