"""Train any method of `mtdiff.methods` on Ray Train: MTDiff-P / -P-onehot / -S, the U-Net
ablation and the baselines of Table 1 (MTBC, MTIQL, MTCQL, MT-DT, Prompt-DT).

    python pipelines/train.py --model mtdiff-p --data runs/maze2d --preset smoke --out runs/train
    python pipelines/train.py --model mtiql --data runs/metaworld --out runs/train
    python pipelines/train.py --model mtdiff-p --set model.backbone=unet ...  # = mtdiff-p-unet

Running the same command again resumes an unfinished run or skips a finished one.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, check_tracking, config_from_args, tracked, writable_dir
from mtdiff.config import ConfigError
from mtdiff.methods import ORDER, get_method, method_of_kind


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.train.run`, print the checkpoint folder."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="mtdiff-p",
                   help="method name (model kind plus the overrides it implies): "
                        f"{', '.join(sorted(ORDER))}, or one that registers itself "
                        "(mtdiff/baselines/<name>.py, e.g. mttd3bc)")
    p.add_argument("--data", required=True, help="dataset folder (from pipelines/collect.py)")
    p.add_argument("--out", required=True, help="folder for runs and checkpoints")
    p.add_argument("--no-mlflow", action="store_true")
    add_config_args(p, sections=("data", "model", "diffusion", "methods", "train", "tracking"))
    args = p.parse_args(argv)
    try:
        method = get_method(args.model)
    except ConfigError as e:
        print(f"error: --model: {e}", file=sys.stderr)
        return 2
    cfg = config_from_args(args, extra=[f"model.kind={method.kind}", *method.overrides])
    try:
        method_of_kind(cfg.model.kind, cfg.model.backbone)  # e.g. mtbc with a U-Net: none
    except ConfigError as e:
        print(f"error: bad configuration: {e}", file=sys.stderr)
        return 2
    out = writable_dir(args.out)
    if not args.no_mlflow:
        check_tracking(cfg.tracking)

    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.artifacts import CheckpointError, Dataset, Inputs
    from mtdiff.data.schema import DatasetError
    from mtdiff.train.stage import run

    try:
        ckpt = run(tracked(cfg, not args.no_mlflow), Inputs(data=Dataset.at(args.data)), out)
    except (DatasetError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint: {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
