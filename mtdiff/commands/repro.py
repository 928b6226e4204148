"""Reproduce MTDiff end to end as a graph of jobs on Ray: collect -> train -> evaluate,
synthesize -> offline RL, report.

    python pipelines/full_repro.py                   # paper on a GPU cluster, else local
    python pipelines/full_repro.py --preset smoke    # a few minutes on 2 CPU cores
    python pipelines/full_repro.py --preset paper --plan          # the jobs, nothing run
    python pipelines/full_repro.py --preset paper --plan --cluster cluster.yaml  # its cost there
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

from mtdiff.cli import (
    add_config_args,
    check_ray_address,
    check_tracking,
    config_from_args,
    writable_dir,
)
from mtdiff.config import ConfigError
from mtdiff.repro import choose_preset
from mtdiff.tracking import OutputBusyError


def main(argv: list[str] | None = None) -> int:
    """Pick the preset, plan or run the graph, print where the results are."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="output folder (default: runs/repro-<preset>, made absolute; "
                   "on a multi-node cluster a folder every node mounts, e.g. /shared/...)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--plan", action="store_true",
                   help="print the job graph (name, state, resources, dependencies); run nothing")
    p.add_argument("--json", action="store_true", help="with --plan: a JSON array of jobs "
                   "(each with estimated_s, its wall seconds alone on the cluster)")
    p.add_argument("--cluster", metavar="FILE",
                   help="with --plan: estimate for the cluster FILE describes instead of the one "
                   "in sight (JSON or YAML): a Ray autoscaler cluster.yaml (each of "
                   "available_node_types at its max_workers, capped by the global max_workers, "
                   "plus the head); {\"nodes\": [{\"CPU\": 16, \"GPU\": 1, \"count\": 8}, ...]}; "
                   "or {\"node_types\": {\"gpu\": {\"CPU\": 8, \"GPU\": 1, \"count\": 4}, ...}}")
    p.add_argument("--calibration", metavar="FILE",
                   help="with --plan: the rates to price the jobs with (benchmarks/calibrate.py "
                   "writes one; default: the shipped file of the cluster's node kind, "
                   "mtdiff/experiment/calibration/h200.json with GPUs, else cpu-2core.json)")
    add_config_args(p, default_preset=None)  # every section: the graph reads them all
    args = p.parse_args(argv)
    if not args.plan and (args.cluster or args.calibration):
        p.error("--cluster and --calibration price a plan: add --plan")
    # Checked before choose_preset starts Ray; the tracking section is the same in every preset.
    check_ray_address()
    if not args.no_mlflow and not args.plan:
        check_tracking(config_from_args(args, args.preset or "local", final=False).tracking)
    if args.preset is None:
        preset, why = choose_preset(start_ray=not (args.plan or args.print_config))
        print(f"[repro] no --preset given: using {preset!r} because {why}", file=sys.stderr)
    else:
        preset = args.preset
    cfg = config_from_args(args, preset)

    # (after argparse: pulls in gymnasium; --help and bad arguments stay fast)
    from mtdiff.data.schema import DatasetError
    from mtdiff.experiment.driver import (
        GraphError,
        TrackingDownError,
        check_not_job_copy,
        plan,
        run,
    )

    out = args.out or f"runs/repro-{preset}"
    try:
        check_not_job_copy(out)  # a relative folder in a job-submitted driver: refused
        if args.plan:  # writes nothing
            return plan(cfg, out=out, plan_json=args.json, cluster_file=args.cluster,
                        calibration=args.calibration)
        return run(cfg, out=writable_dir(out), track=not args.no_mlflow)
    except (DatasetError, ConfigError, GraphError, OutputBusyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrackingDownError as e:  # a run that started and was stopped: not a usage error
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
