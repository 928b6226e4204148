"""Planning horizon H x prompt length J for MTDiff-P: train each, then evaluate (App. A).

    python sweeps/horizon_prompt.py --data runs/data/maze2d-XXXX --suite maze2d \\
        --horizons 8 16 32 --prompt-lens 10 20 --preset local [--set train.steps=1000]

Each trial's driver function trains MTDiff-P on Ray Train (it builds the TorchTrainer:
Train V2 pattern), then evaluates the checkpoint in the trial; the MLflow parent run
holds one child run per (H, J) with its success. Re-running the same command resumes
(finished trainings are found by their run folder and skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtdiff.cli import add_config_args, check_tracking, config_from_args, fail, writable_dir
from mtdiff.layout import MANIFEST


def main(argv: list[str] | None = None) -> int:
    """Build the (H, J) grid and run it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="a dataset folder (from pipelines/collect.py)")
    p.add_argument("--suite", choices=("maze2d", "metaworld"), required=True)
    p.add_argument("--horizons", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--prompt-lens", type=int, nargs="+", default=[10, 20])
    p.add_argument("--tasks", nargs="+")
    p.add_argument("--maps", nargs="+")
    p.add_argument("--out", default="runs/horizon-prompt")
    p.add_argument("--name", default="horizon-prompt")
    p.add_argument("--scheduler", choices=("asha",))
    add_config_args(p, sections=("data", "model", "diffusion", "train", "eval", "tracking"))
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if not (Path(args.data) / MANIFEST).exists():
        fail(f"{args.data} is not a finished dataset (no {MANIFEST}); collect one with "
             "`python pipelines/collect.py --suite ... --out DIR`")
    out = writable_dir(args.out)
    check_tracking(cfg.tracking)

    from ray import tune

    from mtdiff.sweeps import exit_code, run_sweep_or_exit, train_eval_trial

    space = {"data.horizon": tune.grid_search(args.horizons),
             "data.prompt_len": tune.grid_search(args.prompt_lens)}
    res = run_sweep_or_exit(args.name, cfg, space, train_eval_trial, storage=out / "sweeps",
                            cpus_per_trial=1, trainer_cpus=cfg.train.num_workers,
                            scheduler=args.scheduler,
                            trial_config={"data": args.data, "train_out": out / "train",
                                          "suite": args.suite, "tasks": args.tasks,
                                          "maps": args.maps, "trainer_cpus_per_worker": 1})
    print(f"\n{'H':>4}{'J':>5}{'success':>10}")
    for params, success in sorted(res["results"], key=lambda r: (r[0]["data.horizon"],
                                                                 r[0]["data.prompt_len"])):
        print(f"{params['data.horizon']:>4}{params['data.prompt_len']:>5}"
              f"{float('nan') if success is None else success:>10.3f}")
    print(f"best: {res['best']}; MLflow parent run {res['parent_run_id']}")
    return exit_code(res)


if __name__ == "__main__":
    sys.exit(main())
