"""Evaluate a planner -- MTDiff-P and its variants, or a baseline of Table 1 (MTBC, MTIQL,
MTCQL, MT-DT, Prompt-DT) -- on MT50-rand (Tables 1/6), Maze2D (Fig. 4), or by average
return on Cheetah-vel / Ant-dir (Table 5; these suites define no success): the same
environments, episodes, seeds and success for every method. The sampler options
(--sampler, --steps, --guidance, --temperature) are the diffusion planners'.

    python pipelines/evaluate.py --checkpoint runs/train/train-mtdiff-p-XXXX --suite maze2d \\
        --episodes 20 --sampler ddim --steps 20 --guidance 1.2 --temperature 0.5
    python pipelines/evaluate.py --checkpoint CKPT --suite maze2d --maps my-map.txt
    python pipelines/evaluate.py --checkpoint CKPT --suite metaworld --tasks MT10 --episodes 50
    python pipelines/evaluate.py --checkpoint CKPT --suite cheetah-vel   # trained + held-out

Writes the evaluation's JSON into <out> (`mtdiff.layout.evaluation_file`), its plots
(success per task; maze2d-paths.png) and an MLflow run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mtdiff.cli import add_fields_help, check_tracking, tracked, writable_dir
from mtdiff.config import ConfigError, TrackingConfig, apply_overrides
from mtdiff.layout import evaluation_file


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.eval.stage.run`, print the headline numbers."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder or file")
    p.add_argument("--suite", choices=("metaworld", "maze2d", "cheetah-vel", "ant-dir"),
                   required=True)
    p.add_argument("--tasks", nargs="+", help="Meta-World tasks or a set name (default: trained); "
                   "Cheetah-vel / Ant-dir tasks or sets (default: trained + held-out)")
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
                   "scale (default: the scale's own target, 1 on the [0, 1] scales)")
    p.add_argument("--compile", choices=("off", "auto", "inductor", "reduce-overhead",
                                         "cudagraph"),
                   help="compiled denoising loop (diffusion.compile; default: the config's)")
    p.add_argument("--no-wrong-prompt", action="store_true",
                   help="skip the wrong-prompt control on unseen maps")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override the checkpoint's config for "
                   "this evaluation, e.g. --set diffusion.clip_denoised=false (repeatable)")

    add_fields_help(p, ("eval", "diffusion", "maze2d", "metaworld", "tracking"))
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)

    out = writable_dir(args.out)
    if not args.no_mlflow:
        check_tracking(TrackingConfig())  # before torch's import: the usual store

    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.artifacts import Checkpoint, CheckpointError, Inputs
    from mtdiff.eval.stage import run
    from mtdiff.eval.state_use import describe

    try:
        ckpt = Checkpoint.find(args.checkpoint)
        cfg = apply_overrides(ckpt.config, args.overrides)
        if not args.no_mlflow and cfg.tracking.uri:
            check_tracking(cfg.tracking)  # the checkpoint names its own store
        method = ckpt.method
        sampler_flags = [f for f, v in (("--sampler", args.sampler), ("--steps", args.steps),
                                        ("--guidance", args.guidance),
                                        ("--temperature", args.temperature)) if v is not None]
        if sampler_flags and not method.diffusion:
            raise ConfigError(f"{', '.join(sampler_flags)} set the diffusion sampler; "
                              f"the {method.label} checkpoint acts without one (drop them)")
        d = {k: v for k, v in {"sampler": args.sampler, "sample_steps": args.steps,
                               "guidance": args.guidance, "temperature": args.temperature,
                               "compile": args.compile}.items()
             if v is not None}
        if args.sampler == "ddpm" and args.steps is None:
            d["sample_steps"] = cfg.diffusion.num_steps
        dcfg = dataclasses.replace(cfg.diffusion, **d)
        e = {k: v for k, v in {"episodes": args.episodes, "max_steps": args.max_steps,
                               "target_return": args.target_return,
                               "seeds": tuple(args.seeds) if args.seeds else None}.items()
             if v is not None}
        ecfg = dataclasses.replace(cfg.eval, **e)
        cfg = tracked(dataclasses.replace(cfg, eval=ecfg, diffusion=dcfg), not args.no_mlflow)
        inputs = Inputs(model=ckpt, suite=args.suite, tasks=tuple(args.tasks or ()),
                        maps=tuple(args.maps or ()), wrong_prompt=not args.no_wrong_prompt)
        summary = run(cfg, inputs, out).summary
    except (CheckpointError, ConfigError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    a = summary["all"]
    target = summary.get("target_return")
    how = (f"{dcfg.sampler}, {dcfg.sample_steps} steps, alpha={dcfg.guidance}, "
           f"beta={dcfg.temperature}, clip={dcfg.clip_denoised}, target return {target:g}"
           if method.diffusion
           else f"target return {target:g}" if method.fields == "sequence" else "")
    scored = a["success_mean"] is not None  # None: the suite defines no success
    head = (f"success {a['success_mean']:.3f} ± {a['success_std']:.3f}" if scored else
            f"return {a['return_mean']:.2f} ± {a['return_std']:.2f} (success undefined)")
    print(f"{args.suite}: {method.label} {head} over seeds {a['seeds']}"
          f"{f' ({how})' if how else ''}; "
          f"{summary['env_steps_per_s']:.1f} env steps/s"
          + (f"; compile {a.get('compile_seconds', 0.0):.1f} s ({dcfg.compile})"
             if method.diffusion else ""))
    for group in ("train", "unseen", "unseen_wrong_prompt", "heldout"):
        if group in summary:
            g = summary[group]
            print(f"  {group:<20} " + (f"success {g['success_mean']:.3f}" if scored else
                                       f"return {g['return_mean']:.2f} ± {g['return_std']:.2f}"))
    for t, v in a["tasks"].items():
        succ = f"success {v['success_mean']:.3f}  " if scored else ""
        print(f"  {t:<28} {succ}return {v['return_mean']:.1f}")
    print(f"  state use (dataset windows): {describe(summary['state_use'])}")

    print(f"results: {evaluation_file(out, args.suite)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
