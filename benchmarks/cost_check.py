"""Predicted against measured: the cost model's estimate of a reproduction that ran.

Reads the run's job records (`Layout.job_record`: seconds inside each job's task, the time
it finished) and `graph.json` (the run's wall time), estimates the same graph (same preset
and overrides) on the cluster given (default: this machine), and prints per job kind the
summed seconds predicted and measured, and the whole graph's wall time.

    python benchmarks/cost_check.py --preset smoke --out /tmp/costcheck-smoke [--set ...]
        [--cluster FILE] [--calibration FILE] [--json FILE]

A job's measured seconds start when its task runs its code (`mtdiff.experiment.execute`: after the
task got its resources and its worker started; its heavy imports fall inside). So its
predicted seconds are: for a job whose own task does the work (synthesis, TD3-BC, ...) its
seconds alone, for a driver (collection, evaluation, training) its span in the simulated
schedule, which includes the time what it started waited for CPUs, as its record does.
Jobs that were skipped (done by an earlier run) have no fresh record and are left out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mtdiff.cli import add_config_args, config_from_args
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.clusters import load_cluster
from mtdiff.experiment.cost import estimate, human_s
from mtdiff.experiment.grid import build_jobs
from mtdiff.experiment.jobs import read_record
from mtdiff.experiment.rates import default_calibration, load_calibration, this_machine
from mtdiff.layout import Layout


def main() -> None:
    """Estimate, read the records, print the comparison."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the reproduction's output folder")
    p.add_argument("--cluster", help="cluster file (default: this machine)")
    p.add_argument("--calibration", help="calibration file (default: the node kind's)")
    p.add_argument("--json", help="also write the comparison here")
    add_config_args(p, default_preset="smoke")
    args = p.parse_args()
    cfg = config_from_args(args)
    cluster = load_cluster(args.cluster) if args.cluster else ClusterInfo.local()
    cal = load_calibration(args.calibration) if args.calibration else \
        default_calibration(cluster.gpus > 0, None if args.cluster else this_machine())
    lay = Layout.at(args.out)
    jobs = build_jobs(cfg, str(lay.out), cluster)
    est = estimate(jobs, cluster, cal)
    kinds: dict[str, dict[str, float]] = {}
    rows = []
    stale = 0
    for j in jobs:
        rec = read_record(lay.job_record(j.name))
        if rec is None or rec.get("state") != "done":
            continue
        # another key: the folder was moved (paths are in the keys) or the code's config
        # fields changed since the run; the record is still this job's timing
        stale += rec.get("key") != j.key
        c = est.jobs[j.name]
        if any(j.resources.values()):  # its own task did the work: from when it ran
            pred = c.seconds or 0.0
        else:  # a driver: its span, waiting for CPUs for what it started included
            pred = (c.end_s or 0.0) - (c.start_s or 0.0)
        meas = float(rec["seconds"])
        k = kinds.setdefault(j.kind, {"count": 0, "predicted_s": 0.0, "measured_s": 0.0})
        k["count"] += 1
        k["predicted_s"] += pred
        k["measured_s"] += meas
        finished = time.mktime(time.strptime(rec["finished"], "%Y-%m-%d %H:%M:%S"))
        rows.append({"job": j.name, "kind": j.kind, "predicted_s": round(pred, 1),
                     "alone_s": round(c.seconds or 0.0, 1), "measured_s": meas,
                     "finished": finished})
    graph = json.loads(lay.graph.read_text()) if lay.graph.exists() else {}
    measured_wall = graph.get("seconds")
    print(f"calibration {cal.node}; cluster {cluster.nodes}; {len(rows)} job records"
          + (f" ({stale} under another key: moved folder or changed config fields)"
             if stale else ""))
    print(f"{'kind':<12}{'jobs':>5}{'predicted s':>13}{'measured s':>12}{'ratio':>8}")
    for kind, k in kinds.items():
        ratio = k["predicted_s"] / k["measured_s"] if k["measured_s"] else float("nan")
        print(f"{kind:<12}{int(k['count']):>5}{k['predicted_s']:>13.1f}{k['measured_s']:>12.1f}"
              f"{ratio:>8.2f}")
    print(f"whole graph: predicted {human_s(est.wall_s)} ({est.wall_s:.0f} s), measured "
          f"{measured_wall} s (graph.json)" if measured_wall is not None and est.wall_s
          else f"whole graph: predicted {human_s(est.wall_s)}, no graph.json")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"calibration": cal.node, "cluster": cluster.nodes, "predicted_wall_s": est.wall_s,
             "measured_wall_s": measured_wall, "kinds": kinds, "jobs": rows}, indent=1))


if __name__ == "__main__":
    main()
