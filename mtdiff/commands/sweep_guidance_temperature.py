"""Sweep the planner's guidance scale alpha x low-temperature beta (paper App. A: 1.2, 0.5).

    python sweeps/guidance_temperature.py --checkpoint CKPT --suite maze2d \\
        --alphas 1.0 1.2 1.5 --betas 0.3 0.5 1.0 --episodes 10 [--scheduler asha]

Each trial evaluates the same checkpoint; the MLflow parent run "sweep-<name>" holds one
child run per (alpha, beta) with the success rate as its metric.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import check_tracking, writable_dir
from mtdiff.config import TrackingConfig


def main(argv: list[str] | None = None) -> int:
    """Build the search space and run it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--suite", choices=("maze2d", "metaworld"), required=True)
    p.add_argument("--alphas", type=float, nargs="+", default=[1.0, 1.2, 1.5, 2.0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.3, 0.5, 1.0])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--tasks", nargs="+")
    p.add_argument("--maps", nargs="+")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--name", default="guidance-temperature")
    p.add_argument("--storage", default="runs/sweeps")
    p.add_argument("--scheduler", choices=("asha",))
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: one per CPU of the cluster)")
    args = p.parse_args(argv)

    storage = writable_dir(args.storage, "--storage")
    check_tracking(TrackingConfig())  # before torch and Ray are imported: the usual store

    from ray import tune

    from mtdiff.sweeps import evaluate_trial, exit_code, run_sweep_or_exit
    from mtdiff.sweeps.cli import checkpoint_config

    fixed = [f"eval.episodes={args.episodes}", "eval.seeds=0",
             f"diffusion.sampler={args.sampler}", f"diffusion.sample_steps={args.steps}"]
    if args.max_steps:
        fixed.append(f"eval.max_steps={args.max_steps}")
    ckpt, cfg = checkpoint_config(args.checkpoint, fixed, suite=args.suite,
                                  tasks=args.tasks, maps=args.maps)
    check_tracking(cfg.tracking)
    space = {"diffusion.guidance": tune.grid_search(args.alphas),
             "diffusion.temperature": tune.grid_search(args.betas)}
    out = run_sweep_or_exit(args.name, cfg, space, evaluate_trial, storage=storage,
                            trial_config={"checkpoint": ckpt, "suite": args.suite,
                                          "tasks": args.tasks, "maps": args.maps},
                            scheduler=args.scheduler, max_concurrent=args.max_concurrent)
    for params, success in sorted(out["results"], key=lambda r: -(r[1] or 0)):
        print(f"  {params}  success {'n/a' if success is None else f'{success:.3f}'}")
    print(f"best: {out['best']}; MLflow parent run {out['parent_run_id']}")
    return exit_code(out)


if __name__ == "__main__":
    sys.exit(main())
