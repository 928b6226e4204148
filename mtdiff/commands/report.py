"""Build the reproduction report: the paper's tables and figures with our numbers beside.

    python pipelines/report.py --run runs/repro-local
    python pipelines/report.py --run runs/repro-local --preset local --mlflow

Reads the job records of the graph `pipelines/full_repro.py --out RUN` ran (the job names
in RUN/graph.json) and writes RUN/report/report.md, results.json (every cell with mean,
std, 95% CI, seeds, episodes, the paper's number), a CSV per table and the figures;
tables without records say "not run". With --mlflow the folder is logged as artifacts of
an MLflow run named report-<preset>.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mtdiff import tracking
from mtdiff.cli import check_tracking, writable_dir
from mtdiff.config import get_preset


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the report, print its path."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", required=True, help="the reproduction's output folder (--out)")
    p.add_argument("--preset", choices=("smoke", "local", "paper"),
                   help="label for our numbers (default: the preset the records name, else "
                   "from a folder named repro-<preset>)")
    p.add_argument("--dest", help="report folder (default: RUN/report)")
    p.add_argument("--mlflow", action="store_true", help="log the report folder to MLflow")
    args = p.parse_args(argv)

    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.report import ContractError, GraphError, build_report, log_report_to_mlflow

    preset = args.preset
    m = re.fullmatch(r"repro-(smoke|local|paper)", Path(args.run).resolve().name)
    if preset is None and m:
        preset = m.group(1)
    if args.mlflow and preset is None:
        print("error: --mlflow needs --preset (the MLflow run is tagged with it)",
              file=sys.stderr)
        return 2
    if args.mlflow:
        check_tracking(get_preset(preset).tracking)
    if Path(args.run).is_dir():
        writable_dir(args.dest or Path(args.run) / "report", "--dest" if args.dest else "--run")
    try:
        path = build_report(args.run, preset=preset, dest=args.dest)
    except (FileNotFoundError, GraphError, ContractError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.mlflow:
        cfg = get_preset(preset)
        tracking.setup(cfg)
        with tracking.run(cfg, "report", name=f"report-{cfg.preset}", output=str(args.run)):
            log_report_to_mlflow(path.parent)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
