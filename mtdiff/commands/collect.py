"""Collect an offline dataset on Ray (Maze2D waypoint expert, Meta-World experts / SAC,
Cheetah-vel / Ant-dir SAC).

    python pipelines/collect.py --suite maze2d --preset smoke --out runs/maze2d
    python pipelines/collect.py --suite metaworld --source scripted --tasks MT10 --out DIR
    python pipelines/collect.py --suite metaworld --source sac --tasks reach-v3,push-v3 \
        --preset smoke --out DIR --track        # + MLflow: a run, a child run per SAC task
    python pipelines/collect.py --suite cheetah-vel --tasks cheetah-vel:train --out DIR --track
    python pipelines/collect.py --suite ant-dir --tasks ant-dir-0,ant-dir-1 --out DIR

Run the same command again to resume a killed collection.
"""

from __future__ import annotations

import argparse
import os
import sys

from mtdiff import tracking
from mtdiff.cli import add_config_args, check_tracking, config_from_args, writable_dir


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.collect.run`, print where the dataset went."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suite", choices=("maze2d", "metaworld", "cheetah-vel", "ant-dir"),
                   required=True)
    p.add_argument("--out", required=True, help="dataset folder (created; resumed if present)")
    p.add_argument("--source", choices=("sac", "scripted"),
                   help="Meta-World data source (Cheetah-vel / Ant-dir: sac only)")
    p.add_argument("--tasks", help="Meta-World tasks: all, MT10, tasks-20, ... or a,b,c; "
                   "Cheetah-vel / Ant-dir training tasks: cheetah-vel:train, ant-dir-3, ...")
    p.add_argument("--maps", nargs="+", help="Maze2D training maps: shipped names or map files")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--track", action="store_true",
                   help="log to MLflow (tracking.uri): the dataset, and per SAC task a child "
                        "run with its learning curves, plus a plot of all of them")
    add_config_args(p, sections=("collect", "maze2d", "metaworld", "sac", "cheetah_vel",
                                 "ant_dir", "tracking"))
    args = p.parse_args(argv)
    extra = []
    mujoco = args.suite in ("cheetah-vel", "ant-dir")
    if mujoco and args.source == "scripted":
        print(f"error: {args.suite} has no scripted expert; use --source sac", file=sys.stderr)
        return 2
    if args.source and not mujoco:
        extra.append(f"metaworld.source={args.source}")
    if args.tasks is not None and mujoco:  # `--tasks ''` is an error, not "the preset's tasks"
        extra.append(f"{args.suite.replace('-', '_')}.tasks={args.tasks}")
    elif args.tasks is not None:
        extra.append(f"metaworld.tasks={'MT50' if args.tasks == 'all' else args.tasks}")
    if args.maps is not None:
        extra.append(f"maze2d.train_maps={','.join(args.maps)}")
    cfg = config_from_args(args, extra=extra)
    args.out = writable_dir(args.out)
    if args.track:
        check_tracking(cfg.tracking)

    # (after argparse: pulls in numpy; --help and bad arguments stay fast)
    from mtdiff.artifacts import Inputs
    from mtdiff.collect import NO_PROGRESS_ENV, run
    from mtdiff.data.schema import DatasetError

    if args.no_progress:
        os.environ[NO_PROGRESS_ENV] = "1"
    try:
        if args.track:
            print(f"[collect] MLflow: {tracking.setup(cfg)} (experiment "
                  f"{cfg.tracking.experiment!r})")
            with tracking.run(cfg, f"collect-{args.suite}", output=args.out):
                out = run(cfg, Inputs(suite=args.suite), args.out)  # logs into the run
        else:
            out = run(cfg, Inputs(suite=args.suite), args.out)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"dataset: {out}  (inspect: python pipelines/dataset.py info {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
