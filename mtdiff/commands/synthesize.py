"""Synthesize transitions with a trained MTDiff-S for seen or held-out tasks (paper §5.3).

    python pipelines/synthesize.py --checkpoint CKPT --task box-close-v3 --prompt-episodes 1 \\
        --num 100000 --out runs/synth/box-close [--combine-with runs/data/metaworld-XXXX]

The output is a dataset of the project's format in <out>/synthetic (source "synthetic",
provenance in the manifest); --combine-with also writes <out>/augmented: original +
synthetic data. A finished output is reused (rerun to resume a killed one).
Sampler settings are the checkpoint's unless overridden, e.g.
`--set diffusion.sampler=ddim --set diffusion.sample_steps=20 --set diffusion.clip_denoised=false`.
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import add_fields_help, tracked, writable_dir
from mtdiff.config import ConfigError, apply_overrides


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, synthesize, optionally combine, print where it went."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", nargs="+", required=True, help="task(s) to synthesize for")
    p.add_argument("--prompt-episodes", type=int, default=1,
                   help="expert demonstrations the prompt is cut from (paper: 1)")
    p.add_argument("--num", type=int, required=True, help="transitions per task")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--combine-with", help="original dataset to combine with")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="diffusion.FIELD=VALUE",
                   help="sampler setting over the checkpoint's (repeatable)")

    add_fields_help(p, ("diffusion", "offline", "tracking"))
    args = p.parse_args(argv)

    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.artifacts import Checkpoint, CheckpointError, Dataset, Inputs
    from mtdiff.data.reader import verify_checksums
    from mtdiff.data.schema import DatasetError
    from mtdiff.synth.stage import run

    out_dir = writable_dir(args.out)
    try:
        bad = [o for o in args.overrides if not o.startswith("diffusion.")]
        if bad:
            raise ValueError(f"--set {bad[0]}: synthesis takes sampler settings only "
                             "(diffusion.FIELD=VALUE)")
        ckpt = Checkpoint.find(args.checkpoint)
        cfg = apply_overrides(ckpt.config, [
            *args.overrides, f"offline.synth_transitions={args.num}",
            f"offline.prompt_episodes={args.prompt_episodes}", f"offline.seed={args.seed}"])
        data = None
        if args.combine_with:
            verify_checksums(args.combine_with)  # before any work (it is read at the end)
            data = Dataset.at(args.combine_with)
        out = run(tracked(cfg, False), Inputs(model=ckpt, tasks=tuple(args.task), data=data),
                  out_dir)
        print(f"synthetic dataset: {out.synthetic or out.path}")
        if data is not None:
            print(f"augmented dataset: {out.path}")
    except (DatasetError, CheckpointError, ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
