"""Distil a trained MTDiff-P planner into a few-step student (`mtdiff.train.distill`).

    python pipelines/distill.py --teacher runs/train/train-mtdiff-p-XXXX --data runs/maze2d \\
        --preset local --out runs/distill [--set distill.student_steps=2]

The teacher is sampled as planning samples it (guided DDIM, `diffusion.guidance` and
`diffusion.temperature` of the preset); the student plans in `distill.student_steps`
network calls through the same `load_planner(...).plan`. Running the same command again
resumes an unfinished run or skips a finished one. Prints the student's checkpoint folder.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, check_tracking, config_from_args, tracked, writable_dir
from mtdiff.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.train.distill.run`, print the checkpoint folder."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", required=True, help="MTDiff-P checkpoint, folder or run folder")
    p.add_argument("--data", required=True, help="the teacher's training dataset folder")
    p.add_argument("--out", required=True, help="folder for distillation runs")
    p.add_argument("--no-mlflow", action="store_true")
    add_config_args(p, sections=("distill", "diffusion", "eval", "train", "tracking"))
    args = p.parse_args(argv)

    cfg = config_from_args(args)
    # as every entry point: an unwritable --out or an unreachable tracking store is one
    # line and exit 2, before torch or the teacher is loaded
    out = writable_dir(args.out)
    if not args.no_mlflow:
        check_tracking(cfg.tracking)

    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.artifacts import Checkpoint, CheckpointError, Dataset, Inputs
    from mtdiff.data.schema import DatasetError
    from mtdiff.train.distill import run

    try:
        cfg = tracked(cfg, not args.no_mlflow)
        inputs = Inputs(model=Checkpoint.find(args.teacher), data=Dataset.at(args.data))
        ckpt = run(cfg, inputs, out)
    except (ConfigError, DatasetError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint: {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
