"""The report: the paper's tables and figures with its numbers beside ours (DESIGN.md).

    paper.py      the paper's numbers as data (Tables 1, 2, 4, 6; what our copy lost)
    contracts.py  the JSON files the offline-RL stages write for Table 2, Table 4, Figs. 6, 7
    sources.py    finding evaluation JSONs, checkpoints' presets and views, datasets
    table.py      a table type rendering Markdown and CSV from the same cells
    tables.py     Tables 1, 2, 4, 6 (and the numbers behind Figs. 5, 6, 7)
    plots.py      Figs. 5, 6, 7 and per-task success as PNGs
    build.py      `build_report` (report.md + CSVs + PNGs) and `log_report_to_mlflow`

Usage::

    from mtdiff.report import build_report, log_report_to_mlflow
    path = build_report("runs/repro-local", preset="local")   # runs/repro-local/report/report.md
    log_report_to_mlflow(path.parent)                         # if an MLflow run is active
"""

from mtdiff.report.build import build_report, log_report_to_mlflow
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

__all__ = [
    "QUALITY_FILE", "SINGLE_TASK_FILE", "TABLE2_FILE", "TASK_COUNT_FILE", "ContractError",
    "build_report", "log_report_to_mlflow", "read_records", "write_quality",
    "write_single_task", "write_table2", "write_task_count",
]
