"""MTDiff-S trained on 10 / 20 / 30 / 45 tasks -> synthesize -> TD3-BC (paper Fig. 7).

    python sweeps/task_count.py --preset local --task coffee-push-v3 \\
        --sets tasks-10 tasks-20 tasks-30 tasks-45 --out runs/task-count

Each set's dataset is collected first (in the driver, fanned out over Ray; skipped when
on disk); each trial trains MTDiff-S on one set (Ray Train, built by the trial's driver
function), synthesizes for `--task` from a 1-demonstration prompt, and trains TD3-BC on
the task's original + synthetic data for every `offline.seeds`. Results go to
`<out>/offline/task_count.json` (the report's Fig. 7 contract) and MLflow (a parent run
with one child run per set). `--task` must be in every set (the `tasks-N` sets all
contain the paper's coffee-push-v3). Re-running the same command resumes. A trial holds one
CPU and its trainer one per Ray Train worker (Train V2: reserved outside the trial).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from mtdiff.cli import add_config_args, check_tracking, config_from_args, fail, writable_dir
from mtdiff.layout import Layout


def main(argv: list[str] | None = None) -> int:
    """Collect each set's data, run the sweep, write the Fig. 7 records."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["tasks-10", "tasks-20", "tasks-30", "tasks-45"],
                   help="task specs to train MTDiff-S on (set names or a,b,c lists)")
    p.add_argument("--task", default="coffee-push-v3", help="task to synthesize for")
    p.add_argument("--out", default="runs/task-count")
    p.add_argument("--name", default="task-count")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: the cluster's CPUs / (1 for the trial + "
                        "the trainer's workers))")
    add_config_args(p, sections=("data", "model", "diffusion", "train", "offline", "tracking"))
    args = p.parse_args(argv)
    cfg = config_from_args(args)

    from ray import tune

    from mtdiff.artifacts import Inputs
    from mtdiff.collect import run as collect
    from mtdiff.envs.metaworld import resolve_tasks
    from mtdiff.report.contracts import write_task_count
    from mtdiff.sweeps import exit_code, run_sweep_or_exit, task_count_trial

    try:
        sizes = {s: len(resolve_tasks(s)) for s in args.sets}
        missing = [s for s in args.sets if args.task not in resolve_tasks(s)]
    except ValueError as e:
        fail(str(e))
    if missing:
        fail(f"--task {args.task} is not in set(s) {missing}: MTDiff-S must have been trained "
             "on it (Fig. 7 varies only how many other tasks it saw)")
    out = writable_dir(args.out)
    check_tracking(cfg.tracking)  # before the collections start Ray
    lay = Layout.at(out)
    data = {}
    for s in args.sets:
        c = replace(cfg, metaworld=replace(cfg.metaworld, tasks=s))
        try:
            data[s] = str(collect(c, Inputs(suite="metaworld"), lay.dataset(c, "metaworld")))
        except ValueError as e:  # DatasetError: a folder of another dataset, ...
            fail(str(e))
    res = run_sweep_or_exit(args.name, cfg, {"metaworld.tasks": tune.grid_search(args.sets)},
                            task_count_trial, storage=out / "sweeps", cpus_per_trial=1,
                            trainer_cpus=cfg.train.num_workers,
                            max_concurrent=args.max_concurrent,
                            trial_config={"data": data,
                                          "train_out": lay.train_root("metaworld"),
                                          "trainer_cpus_per_worker": 1, "out": lay.out,
                                          "task": args.task})
    rows = [{"num_tasks": sizes[params["metaworld.tasks"]], "seed": seed, "task": args.task,
             "success": float(m[f"success_s{seed}"]), "tasks": params["metaworld.tasks"],
             "preset": cfg.preset}
            for params, m in res["trials"] for seed in cfg.offline.seeds
            if f"success_s{seed}" in m]
    path = write_task_count(out, rows, merge=True)
    print(f"\n{'tasks':>6}  {'set':<24}{'TD3-BC success (MTDiff-S data)':>32}")
    for params, m in sorted(res["trials"], key=lambda t: sizes[t[0]["metaworld.tasks"]]):
        spec = params["metaworld.tasks"]
        print(f"{sizes[spec]:>6}  {spec:<24}{m.get('success', float('nan')):>32.3f}")
    print(f"records: {path}\nMLflow parent run {res['parent_run_id']}")
    return exit_code(res)


if __name__ == "__main__":
    sys.exit(main())
