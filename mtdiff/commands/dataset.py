"""Dataset tools: summary, validation, task subsets, Minari export, D4RL-style HDF5 import.

    python pipelines/dataset.py info DIR
    python pipelines/dataset.py validate DIR            # exit 1 on any problem
    python pipelines/dataset.py subset DIR --tasks push-v3 [reach-v3 ...] --out NEW_DIR
    python pipelines/dataset.py export-minari DIR --out MINARI_DIR [--view sub-optimal]
    python pipelines/dataset.py import-d4rl FILE.hdf5 --task NAME --out DIR
"""

from __future__ import annotations

import argparse
import sys

from mtdiff.cli import writable_dir
from mtdiff.data.interop import export_minari, import_d4rl
from mtdiff.data.reader import read_manifest, validate_dataset, view_summary
from mtdiff.data.schema import DatasetError
from mtdiff.data.subset import write_subset


def _info(args: argparse.Namespace) -> int:

    m = read_manifest(args.dir)
    tasks = m["tasks"]
    print(f"{args.dir}: suite={m['suite']} source={m['source']} config={m['config_hash']} "
          f"created={m['created']}")
    total = sum(t["transitions"] for t in tasks.values())
    first = next(iter(tasks.values()))
    print(f"{len(tasks)} tasks, {total} transitions, obs_dim={first['obs_dim']} "
          f"act_dim={first['act_dim']}, prompts for {len(m.get('prompt_tasks', tasks))} tasks")
    print(f"{'task':<28}{'transitions':>12}{'episodes':>10}{'shards':>8}{'mean return':>13}"
          f"{'success':>9}")
    for name, t in tasks.items():
        print(f"{name:<28}{t['transitions']:>12}{t['episodes']:>10}{len(t['shards']):>8}"
              f"{t['mean_return']:>13.2f}{t['success_rate']:>9.2f}")
    _print_views(args.dir)
    return 0


def _print_views(root: str) -> None:
    """Per task and view (near-optimal = all episodes, sub-optimal = the first half):
    episodes, mean episode return and success rate, and the mean over tasks."""
    views = view_summary(root)
    names = ("near-optimal", "sub-optimal")
    print(f"\nviews{'':<23}" + "".join(f"{v + ' return':>24}{'success':>9}" for v in names))
    for name, v in views.items():
        print(f"{name:<28}" + "".join(f"{v[n]['mean_return']:>24.2f}{v[n]['success_rate']:>9.2f}"
                                      for n in names))
    mean = {n: (sum(v[n]["mean_return"] for v in views.values()) / len(views),
                sum(v[n]["success_rate"] for v in views.values()) / len(views)) for n in names}
    print(f"{'mean over tasks':<28}" + "".join(f"{mean[n][0]:>24.2f}{mean[n][1]:>9.2f}"
                                               for n in names))


def _validate(args: argparse.Namespace) -> int:

    problems = validate_dataset(args.dir, checksum=not args.fast)
    for p in problems:
        print(f"PROBLEM: {p}")
    if not problems:
        _print_views(args.dir)
    print(f"{args.dir}: " + ("valid" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def _subset(args: argparse.Namespace) -> int:

    tasks = [t for spec in args.tasks for t in spec.split(",") if t]
    out = write_subset(args.dir, args.out, tasks)
    print(f"subset of {len(tasks)} task(s) of {args.dir} -> {out}")
    return 0


def _export(args: argparse.Namespace) -> int:

    ids = export_minari(args.dir, args.out, view=args.view, tasks=args.tasks)
    print(f"exported {len(ids)} Minari dataset(s) to {args.out}:")
    for i in ids:
        print(f"  {i}")
    print(f"open with: MINARI_DATASETS_PATH={args.out} python -c \"import minari; "
          f"print(minari.load_dataset('{ids[0]}'))\"")
    return 0


def _import(args: argparse.Namespace) -> int:

    out = import_d4rl(args.file, args.out, task=args.task, suite=args.suite,
                      prompt_len=args.prompt_len)
    print(f"imported {args.file} as task {args.task!r} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch a sub-command; dataset problems exit non-zero with the message."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info", help="summary of a dataset")
    s.add_argument("dir")
    s.set_defaults(fn=_info)
    s = sub.add_parser("validate", help="check every shard; exit 1 on any problem")
    s.add_argument("dir")
    s.add_argument("--fast", action="store_true", help="skip checksums")
    s.set_defaults(fn=_validate)
    s = sub.add_parser("subset", help="a new dataset of some of this one's tasks")
    s.add_argument("dir")
    s.add_argument("--tasks", nargs="+", required=True, help="task names (or a,b,c)")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_subset)
    s = sub.add_parser("export-minari", help="write Minari datasets (one per task)")
    s.add_argument("dir")
    s.add_argument("--out", required=True)
    s.add_argument("--view", choices=("near-optimal", "sub-optimal"), default="near-optimal")
    s.add_argument("--tasks", nargs="+")
    s.set_defaults(fn=_export)
    s = sub.add_parser("import-d4rl", help="convert a D4RL-style HDF5 file")
    s.add_argument("file")
    s.add_argument("--task", required=True, help="task name to give the data")
    s.add_argument("--out", required=True)
    s.add_argument("--suite", default="d4rl")
    s.add_argument("--prompt-len", type=int, default=20)
    s.set_defaults(fn=_import)
    args = p.parse_args(argv)
    if getattr(args, "out", None) is not None:
        writable_dir(args.out)
    try:
        return args.fn(args)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if args.cmd == "validate" else 2


if __name__ == "__main__":
    sys.exit(main())
