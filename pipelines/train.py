"""Train MTDiff-P, MTDiff-P-onehot or MTDiff-S on Ray Train.

    python pipelines/train.py --model mtdiff-p --data runs/maze2d --preset smoke --out runs/train

Running the same command again resumes an unfinished run or skips a finished one.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, check_tracking, config_from_args, writable_dir


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.train.run`, print the checkpoint folder."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=("mtdiff-p", "mtdiff-s", "mtdiff-p-onehot"),
                   default="mtdiff-p")
    p.add_argument("--data", required=True, help="dataset folder (from pipelines/collect.py)")
    p.add_argument("--out", required=True, help="folder for runs and checkpoints")
    p.add_argument("--no-mlflow", action="store_true")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args, extra=[f"model.kind={args.model}"])
    out = writable_dir(args.out)
    if not args.no_mlflow:
        check_tracking(cfg.tracking)

    from mtdiff.data.schema import DatasetError
    from mtdiff.train import run
    from mtdiff.train.checkpoints import CheckpointError

    try:
        ckpt = run(cfg, data=args.data, out=out, track=not args.no_mlflow)
    except (DatasetError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint: {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
