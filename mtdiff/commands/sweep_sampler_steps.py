"""Sampler x denoising steps on one checkpoint: success and time per plan (issue: fast sampling).

    python sweeps/sampler_steps.py --checkpoint CKPT --suite maze2d --episodes 6 \\
        [--settings ddpm-200 ddim-20 dpmsolver-20 ddim-10] [--maps train-0 train-1]

Each trial evaluates the same checkpoint with one sampler setting (the paper's 200-step
DDPM against DDIM / DPM-Solver++ with few steps); the table at the end gives each
setting's success, planning seconds per environment step and the speed-up against the
first setting. MLflow: a parent run with one child run per setting.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import check_tracking, fail, writable_dir
from mtdiff.config import TrackingConfig


def parse_setting(text: str) -> dict[str, object]:
    """'ddim-20' -> {"diffusion.sampler": "ddim", "diffusion.sample_steps": 20}."""
    name, _, steps = text.rpartition("-")
    if name not in ("ddpm", "ddim", "dpmsolver") or not steps.isdigit():
        fail(f"--settings: {text!r} is not SAMPLER-STEPS with SAMPLER one of ddpm, ddim, "
             "dpmsolver (e.g. ddim-20)")
    return {"diffusion.sampler": name, "diffusion.sample_steps": int(steps)}


def main(argv: list[str] | None = None) -> int:
    """Build the grid of sampler settings and run it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--suite", choices=("maze2d", "metaworld"), required=True)
    p.add_argument("--settings", nargs="+", default=["ddpm-200", "ddim-20", "dpmsolver-20"])
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--max-steps", type=int)
    p.add_argument("--tasks", nargs="+")
    p.add_argument("--maps", nargs="+")
    p.add_argument("--name", default="sampler-steps")
    p.add_argument("--storage", default="runs/sweeps")
    args = p.parse_args(argv)
    settings = [parse_setting(s) for s in args.settings]

    storage = writable_dir(args.storage, "--storage")
    check_tracking(TrackingConfig())  # before torch and Ray are imported: the usual store

    from ray import tune

    from mtdiff.sweeps import evaluate_trial, exit_code, run_sweep_or_exit
    from mtdiff.sweeps.cli import checkpoint_config

    fixed = [f"eval.episodes={args.episodes}", f"eval.seeds={','.join(map(str, args.seeds))}"]
    if args.max_steps:
        fixed.append(f"eval.max_steps={args.max_steps}")
    ckpt, cfg = checkpoint_config(args.checkpoint, fixed, suite=args.suite,
                                  tasks=args.tasks, maps=args.maps)
    check_tracking(cfg.tracking)
    out = run_sweep_or_exit(args.name, cfg, {"sampler": tune.grid_search(settings)},
                            evaluate_trial, storage=storage,
                            trial_config={"checkpoint": ckpt, "suite": args.suite,
                                          "tasks": args.tasks, "maps": args.maps})
    by = {f"{p['sampler']['diffusion.sampler']}-{p['sampler']['diffusion.sample_steps']}": m
          for p, m in out["trials"]}
    base = by.get(args.settings[0])
    print(f"\n{'setting':<16}{'success':>9}{'plan s/env step':>17}{'speed-up':>10}"
          f"{'success - ' + args.settings[0]:>22}{'calls/plan':>12}")
    for s in args.settings:
        m = by.get(s)
        if m is None:
            print(f"{s:<16}  (no result)")
            continue
        nan = float("nan")
        speed = (base["plan_s_per_env_step"] / m["plan_s_per_env_step"]
                 if base and m.get("plan_s_per_env_step") else nan)
        diff = m.get("success", nan) - base.get("success", nan) if base else nan
        print(f"{s:<16}{m.get('success', nan):>9.3f}{m.get('plan_s_per_env_step', nan):>17.4f}"
              f"{speed:>9.1f}x"
              f"{diff:>+22.3f}{m.get('network_calls_per_plan', nan):>12.0f}")
    print(f"MLflow parent run {out['parent_run_id']}")
    return exit_code(out)


if __name__ == "__main__":
    sys.exit(main())
