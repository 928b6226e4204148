"""Reproduce MTDiff end to end: collect -> datasets -> (train -> evaluate -> synthesize -> report).

    python pipelines/full_repro.py                   # paper on a GPU cluster, else local
    python pipelines/full_repro.py --preset smoke    # a few minutes on 2 CPU cores
    python pipelines/full_repro.py --preset local --set train.steps=500 --out runs/mine

Re-running the same command continues where a crashed run stopped. Results go to MLflow
(`mlflow ui --backend-store-uri sqlite:///mlflow.db`) and under --out.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_config_args, check_tracking, config_from_args, writable_dir


def main(argv: list[str] | None = None) -> int:
    """Pick the preset, run every stage, print where the results are."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="output folder (default: runs/repro-<preset>)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    add_config_args(p, default_preset=None)
    args = p.parse_args(argv)
    # Checked before choose_preset starts Ray; the tracking section is the same in every preset.
    if not args.no_mlflow:
        check_tracking(config_from_args(args, args.preset or "local").tracking)
    if args.preset is None:
        from mtdiff.repro import choose_preset

        preset, why = choose_preset()
        print(f"[repro] no --preset given: using {preset!r} because {why}")
    else:
        preset = args.preset
    cfg = config_from_args(args, preset)
    out = writable_dir(args.out or f"runs/repro-{preset}")

    from mtdiff.data.schema import DatasetError
    from mtdiff.repro import run

    try:
        results = run(cfg, out=out, track=not args.no_mlflow)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[repro] finished {len(results)} stage(s); outputs under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
