"""Evaluate an MTDiff-P planner: MT50-rand success (Tables 1/6) or Maze2D (Fig. 4).

    python pipelines/evaluate.py --checkpoint runs/train/train-mtdiff-p-XXXX --suite maze2d \\
        --episodes 20 --sampler ddim --steps 20 --guidance 1.2 --temperature 0.5
    python pipelines/evaluate.py --checkpoint CKPT --suite maze2d --maps my-map.txt
    python pipelines/evaluate.py --checkpoint CKPT --suite metaworld --tasks MT10 --episodes 50

Writes <out>/eval-<suite>.json (and maze2d-paths.png) and logs an MLflow run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.eval.stage.run`, print the headline numbers."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder or file")
    p.add_argument("--suite", choices=("metaworld", "maze2d"), required=True)
    p.add_argument("--tasks", nargs="+", help="Meta-World tasks or a set name (default: trained)")
    p.add_argument("--maps", nargs="+", help="Maze2D maps: names or text files (default: "
                   "training + unseen maps)")
    p.add_argument("--episodes", type=int, help="episodes per task/map and seed")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--sampler", choices=("ddpm", "ddim", "dpmsolver"))
    p.add_argument("--steps", type=int, help="denoising steps at sampling time")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale alpha")
    p.add_argument("--temperature", type=float, help="low-temperature beta")
    p.add_argument("--target-return", type=float, help="R_max on the checkpoint's return "
                   "scale (default: the scale's own target, 1 for time-max and task-max)")
    p.add_argument("--no-wrong-prompt", action="store_true",
                   help="skip the wrong-prompt control on unseen maps")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override the checkpoint's config for "
                   "this evaluation, e.g. --set diffusion.clip_denoised=false (repeatable)")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)

    from mtdiff.config import ConfigError, apply_overrides, from_dict
    from mtdiff.eval.stage import run
    from mtdiff.train.core import CheckpointError, load_checkpoint
    from mtdiff.train.stage import find_checkpoint

    try:
        cfg = apply_overrides(from_dict(load_checkpoint(find_checkpoint(args.checkpoint))
                                        ["meta"]["config"]), args.overrides)
        d = {k: v for k, v in {"sampler": args.sampler, "sample_steps": args.steps,
                               "guidance": args.guidance, "temperature": args.temperature}.items()
             if v is not None}
        if args.sampler == "ddpm" and args.steps is None:
            d["sample_steps"] = cfg.diffusion.num_steps
        dcfg = dataclasses.replace(cfg.diffusion, **d)
        e = {k: v for k, v in {"episodes": args.episodes, "max_steps": args.max_steps,
                               "target_return": args.target_return,
                               "seeds": tuple(args.seeds) if args.seeds else None}.items()
             if v is not None}
        ecfg = dataclasses.replace(cfg.eval, **e)
        summary = run(args.checkpoint, suite=args.suite, out=args.out, cfg_overrides=cfg,
                      eval_cfg=ecfg, diffusion=dcfg, tasks=args.tasks, maps=args.maps,
                      wrong_prompt=not args.no_wrong_prompt, track=not args.no_mlflow)
    except (CheckpointError, ConfigError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    a = summary["all"]
    print(f"{args.suite}: success {a['success_mean']:.3f} ± {a['success_std']:.3f} over seeds "
          f"{a['seeds']} ({dcfg.sampler}, {dcfg.sample_steps} steps, alpha={dcfg.guidance}, "
          f"beta={dcfg.temperature}, clip={dcfg.clip_denoised}, target return "
          f"{summary['target_return']:g}); {summary['env_steps_per_s']:.1f} env steps/s")
    for group in ("train", "unseen", "unseen_wrong_prompt", "heldout"):
        if group in summary:
            print(f"  {group:<20} success {summary[group]['success_mean']:.3f}")
    for t, v in a["tasks"].items():
        print(f"  {t:<28} success {v['success_mean']:.3f}  return {v['return_mean']:.1f}")
    print(f"results: {args.out}/eval-{args.suite}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
