"""Reproduce MTDiff end to end as a graph of jobs on Ray: collect -> train -> evaluate,
synthesize -> offline RL, report.

    python pipelines/full_repro.py                   # paper on a GPU cluster, else local
    python pipelines/full_repro.py --preset smoke    # a few minutes on 2 CPU cores
    python pipelines/full_repro.py --preset paper --plan          # the jobs, nothing run
    python pipelines/full_repro.py --preset local --set experiment.seeds=0,1,2 --out runs/x

Every job is a Ray task (as many at once as the cluster allows) writing under --out in a
folder named by the content hash of its config; re-running the same command skips
finished jobs and resumes the rest. Results go to MLflow (a parent run per reproduction,
a child run per job: `mlflow ui --backend-store-uri sqlite:///mlflow.db`) and under
--out (report/report.md, report/results.json). Exit codes: 0 all jobs finished, 1 a job
failed (the table names its log), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, check_tracking, config_from_args, writable_dir


def main(argv: list[str] | None = None) -> int:
    """Pick the preset, plan or run the graph, print where the results are."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="output folder (default: runs/repro-<preset>, made absolute; "
                   "on a multi-node cluster a folder every node mounts, e.g. /shared/...)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--plan", action="store_true",
                   help="print the job graph (name, state, resources, dependencies); run nothing")
    p.add_argument("--json", action="store_true", help="with --plan: a JSON array of jobs")
    add_config_args(p, default_preset=None)
    args = p.parse_args(argv)
    # Checked before choose_preset starts Ray; the tracking section is the same in every preset.
    if not args.no_mlflow and not args.plan:
        check_tracking(config_from_args(args, args.preset or "local").tracking)
    if args.preset is None:
        from mtdiff.repro import choose_preset

        preset, why = choose_preset(start_ray=not args.plan)
        print(f"[repro] no --preset given: using {preset!r} because {why}", file=sys.stderr)
    else:
        preset = args.preset
    cfg = config_from_args(args, preset)

    from mtdiff.config import ConfigError
    from mtdiff.data.schema import DatasetError
    from mtdiff.experiment.driver import GraphError, check_not_job_copy, run
    from mtdiff.tracking import OutputBusyError

    out = args.out or f"runs/repro-{preset}"
    try:
        check_not_job_copy(out)  # a relative folder in a job-submitted driver: refused
        out = out if args.plan else writable_dir(out)  # --plan writes nothing
        return run(cfg, out=out, track=not args.no_mlflow, plan_only=args.plan,
                   plan_json=args.json)
    except (DatasetError, ConfigError, GraphError, OutputBusyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
