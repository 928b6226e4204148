"""Collect an offline dataset on Ray (Maze2D waypoint expert, Meta-World experts / SAC).

    python pipelines/collect.py --suite maze2d --preset smoke --out runs/maze2d
    python pipelines/collect.py --suite metaworld --source scripted --tasks MT10 --out DIR

Run the same command again to resume a killed collection.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, config_from_args
from mtdiff.config import apply_overrides


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run `mtdiff.collect.run`, print where the dataset went."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suite", choices=("maze2d", "metaworld"), required=True)
    p.add_argument("--out", required=True, help="dataset folder (created; resumed if present)")
    p.add_argument("--source", choices=("sac", "scripted"), help="Meta-World data source")
    p.add_argument("--tasks", help="Meta-World tasks: all, MT10, tasks-20, ... or a,b,c")
    p.add_argument("--maps", nargs="+", help="Maze2D training maps: shipped names or map files")
    p.add_argument("--no-progress", action="store_true")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    extra = []
    if args.source:
        extra.append(f"metaworld.source={args.source}")
    if args.tasks:
        extra.append(f"metaworld.tasks={'MT50' if args.tasks == 'all' else args.tasks}")
    if args.maps:
        extra.append(f"maze2d.train_maps={','.join(args.maps)}")
    cfg = apply_overrides(cfg, extra)

    from mtdiff.collect import run
    from mtdiff.data.schema import DatasetError

    try:
        out = run(cfg, suite=args.suite, out=args.out, progress=not args.no_progress)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"dataset: {out}  (inspect: python pipelines/dataset.py info {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
