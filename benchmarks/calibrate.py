"""Measure this node's rates for the cost model and write a calibration file.

Every rate `mtdiff.experiment.rates.RATES` names is measured through the project's own
code paths, one torch thread (as a Ray task or a 1-CPU training worker runs), in "busy"
seconds: process CPU time when other work took the core for a while (a shared machine),
else wall time, so the rates are those of one core of the node (Ray start-ups are wall
time):

- collection: the Maze2D and Meta-World collection jobs (`collect.*._maze_job`,
  `_scripted_job`) on one map / task, in process;
- data: `write_subset` and `load_dataset` of a random 10-task Meta-World-shaped dataset;
- training: the methods' learners (`build_learner(...).update`) at several sizes and
  batches per network family; each family's ``fixed_s`` and ``flops_per_s`` are the least-
  squares line through (FLOPs per step from the config, seconds per step);
- planning: whole evaluation batches (`mtdiff.eval.suites.run_job`) of untrained
  checkpoints at 1 and more environments, their `plan_seconds` per denoiser / policy call;
- environments: the reference policies' batches (`run_policy_job`, zero action);
- SAC and TD3-BC: their update steps (`SACAgent.update`, `TD3BC.train`), SAC's acting
  loop, TD3-BC's evaluation (`evaluate_policy`);
- Ray: a task's start in a new and in a reused worker, each suite's first env in a new
  process, a training through `mtdiff.train.run` (its fixed cost and the CPUs its start
  keeps busy), a checkpoint, a report.

    python benchmarks/calibrate.py [--out FILE] [--node NAME] [--only SECTION ...]

A few minutes on 2 cores. Prints a table; writes FILE (default
mtdiff/experiment/calibration/<node>.json), each rate with its source. A GPU node's rates
(its networks on the GPU) come from `benchmarks/calibrate_gpu.py`, run on that node.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The parts, by topic, in modules beside this script (benchmarks/ is not a package).
from calibrate_common import Calibrator
from calibrate_data import collect_maze, collect_metaworld, data_rates, envs
from calibrate_networks import planning, training
from calibrate_offline import quality, sac, td3bc
from calibrate_ray import ray_costs, suite_imports

from mtdiff.experiment.rates import CALIBRATION_DIR, RATES, from_dict, this_machine
from mtdiff.runtime import set_torch_threads

SECTIONS = ("collection", "envs", "offline", "training", "planning", "ray")


def kept_rates(out: Path) -> dict[str, Any]:
    """The rates of `out` that `--only` keeps; one line and exit 2 where it cannot (no such
    file, or measured on another machine: its rates and this one's would mix)."""
    try:
        kept = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        print(f"calibrate: --only keeps the other rates of {out}, which cannot be read "
              f"({e}); run without --only", file=sys.stderr)
        raise SystemExit(2) from None
    if not isinstance(kept, dict) or kept.get("machine") != this_machine():
        print(f"calibrate: {out} was not measured on this machine; --only would mix its "
              "rates with this one's: run without --only, or give --out", file=sys.stderr)
        raise SystemExit(2)
    return kept["rates"]


def main() -> None:
    """Measure everything (or `--only` some sections) and write the file."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", default="cpu-2core", help="name of this node kind")
    p.add_argument("--out", help="output file (default mtdiff/experiment/calibration/"
                   "<node>.json)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"measure only these ({', '.join(SECTIONS)}); the other rates are "
                   "kept from the existing output file")
    args = p.parse_args()
    set_torch_threads(1)
    out = Path(args.out or CALIBRATION_DIR / f"{args.node}.json")
    only = set(args.only or SECTIONS)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        c = Calibrator(args.node, Path(tmp))
        if only != set(SECTIONS):
            c.rates.update(kept_rates(out))
        print("collection and data", flush=True)  # the datasets every section uses
        maze, mw = collect_maze(c), collect_metaworld(c)
        rand = data_rates(c)
        if "envs" in only:
            print("environments", flush=True)
            envs(c, maze, mw)
            suite_imports(c)
        if "offline" in only:
            print("SAC, TD3-BC, Table 4", flush=True)
            sac(c)
            td3bc(c, mw)
            quality(c, mw)
        if "training" in only:
            print("training", flush=True)
            training(c, rand)
        if "planning" in only:
            print("planning", flush=True)
            planning(c, mw)
        if "ray" in only:
            print("Ray", flush=True)
            ray_costs(c, mw)
    missing = [k for k in RATES if k not in c.rates]
    if missing:
        raise SystemExit(f"not measured: {missing}")
    doc = {"node": args.node, "device": "cpu",
           "about": f"{args.node}: one CPU core per task (torch 1 thread), as a Ray task "
                    "with 1 CPU runs; written by benchmarks/calibrate.py",
           # --plan on this machine picks this file by it (mtdiff.experiment.rates)
           "machine": this_machine(),
           "rates": {k: c.rates[k] for k in RATES}}
    from_dict(doc, str(out))  # the checks the cost model makes
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({len(doc['rates'])} rates) in {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
