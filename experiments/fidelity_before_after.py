"""Before/after table for the fidelity fixes (docs/results.md), with bootstrap 95% CIs
(same code, same budget).

"before" = today's code with the old option values (`BEFORE`, the `--set` overrides a
user would give); "after" = the defaults. Both arms run the project's own stages
(`mtdiff.collect.run`, `mtdiff.train.run`, `mtdiff.eval.stage.run`) at the preset's scale
and training budget:

- Meta-World (the preset's tasks, MT10 at `local`): MTDiff-P trained on the near-optimal
  and on the sub-optimal view of each arm's own scripted dataset, evaluated on every
  training task with `--episodes` episodes per task and training seed.
- Maze2D: MTDiff-P on the training maps, evaluated on the unseen maps with the right
  demonstration prompt and the wrong one (another map's); and, after only, the same
  model trained with layout prompts (`data.prompt_kind=layout`), with the map's own
  layout and a wrong one. Both arms use one Maze2D dataset: the only collection option
  that differs (`collect.prompt_window`) has no effect on Maze2D, whose demos end at G.
- x0-hat clipping alone: the after arm's near-optimal Meta-World and demo-prompted Maze2D
  checkpoints evaluated again with `diffusion.clip_denoised` flipped (same weights).

Success rates are the mean over tasks (maps) of the per-task rates; the CI resamples
episodes within each task with one training seed, and training seeds with several
`--train-seeds` (`mtdiff.eval.bootstrap`: the report's statistics, `mtdiff.report.stats`).
A difference is *resolved* when its CI excludes 0. With one training seed the CIs cover
evaluation noise only, not training noise.

    python experiments/fidelity_before_after.py --preset local --out runs/fidelity \\
        [--part all|metaworld|maze2d] [--episodes 30] [--train-seeds 0 1 2] [--fix2-arm]

Every stage is skipped when its output exists, so an interrupted run continues. Cost at
`local` on 2 CPU cores, one training seed (estimates from the README's measured stage
times): Meta-World ~2 h (2 collections, 4 trainings of ~10 min, 4 evaluations of 30
episodes x 10 tasks), Maze2D ~45 min (1 collection, 3 trainings, 3 evaluations).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtdiff.artifacts import Checkpoint, Dataset, Inputs
from mtdiff.config import Config, DiffusionConfig, apply_overrides, get_preset, to_dict
from mtdiff.eval.bootstrap import Interval, Outcomes, difference_ci, success_ci
from mtdiff.layout import evaluation_file

# The option values before the fidelity fixes (each fix's old behaviour, kept selectable).
BEFORE = (
    "data.return_scale=task-max",  # 1: undiscounted reward-to-go, min-max per task ...
    "data.return_discount=1.0",
    "eval.target_return=1.0",  # ... asked for R = 1 at every step
    "metaworld.scripted_noise=0.0,0.1,0.3,0.5",  # 2: cleanest episodes first
    "metaworld.scripted_random=0.0",
    "collect.prompt_window=anywhere",  # 3: prompts cut anywhere in a 500-step demo
    "diffusion.clip_denoised=false",  # 4: x0-hat not clipped
)


# Fix 2 alone reverted: the after arm on the before arm's scripted episodes (noise blocks,
# cleanest first, no random-action episodes); returns, targets and prompt windows stay the
# after arm's. Against "after" it measures Fix 2 (the data); against "before", Fixes 1 and 3.
FIX2_REVERTED = ("metaworld.scripted_noise=0.0,0.1,0.3,0.5", "metaworld.scripted_random=0.0")
ARMS = {"before": BEFORE, "after": (), "fix2-reverted": FIX2_REVERTED}


def arm_config(preset: str, arm: str, extra: list[str]) -> Config:
    """The preset with the arm's options (`ARMS`) and the user's extras."""
    return apply_overrides(get_preset(preset), [*ARMS[arm], *extra])


def _collect(cfg: Config, suite: str, out: Path) -> Path:
    from mtdiff.collect import run as collect

    dest = out / "data" / f"{suite}-{cfg.collection_hash(suite)}"
    return collect(cfg, Inputs(suite=suite), dest).path


def _train(cfg: Config, data: Path, suite: str, out: Path) -> Path:
    from mtdiff.train.stage import run as train

    cfg = apply_overrides(cfg, ["tracking.enabled=false"])
    return train(cfg, Inputs(data=Dataset.at(data)), out / "train" / suite).path


def _evaluate(cfg: Config, ckpt: Path, suite: str, dest: Path, *, episodes: int,
              maps: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-job episode records; read back when this checkpoint's evaluation is on disk."""
    from mtdiff.eval.stage import run as evaluate

    result = evaluation_file(dest, suite)
    ecfg = replace(cfg.eval, episodes=episodes, seeds=(0,))
    if result.exists():
        s = json.loads(result.read_text())
        if Path(s["summary"]["checkpoint"]).resolve() == Path(ckpt).resolve() and \
                {k: v for k, v in s["summary"]["diffusion"].items()
                 if k not in DiffusionConfig.HOW_IT_RUNS} == cfg.diffusion.identity() and \
                s["summary"]["eval"] == to_dict(ecfg):  # the same evaluation: reuse it
            return s["episodes"]
    cfg = apply_overrides(replace(cfg, eval=ecfg), ["tracking.enabled=false"])
    evaluate(cfg, Inputs(model=Checkpoint.find(ckpt), maps=tuple(maps or ()),
                         wrong_prompt=suite == "maze2d"), dest)
    return json.loads(result.read_text())["episodes"]


def _group(records: list[dict[str, Any]], seed: int, **where: Any) -> dict[str, Any]:
    from mtdiff.eval.bootstrap import outcomes_from_episodes

    return outcomes_from_episodes(records, seed, where=where)[seed]


def metaworld_part(args: argparse.Namespace, out: Path) -> dict[str, Outcomes]:
    """{"<arm>/<view>": outcomes} for MTDiff-P on both views of both arms."""
    conds: dict[str, Outcomes] = {}
    # The after arm first: its data and trainings are the experiment graph's (a run folder's
    # `data/` and `train/` linked into --out are reused), and its clip ablation decides a default.
    for arm in ("after", "before", *(("fix2-reverted",) if args.fix2_arm else ())):
        cfg = arm_config(args.preset, arm, args.set)
        data = _collect(cfg, "metaworld", out)
        for view in ("near-optimal", "sub-optimal"):
            for seed in args.train_seeds:
                c = replace(cfg, model=replace(cfg.model, kind="mtdiff-p"),
                            data=replace(cfg.data, view=view),
                            train=replace(cfg.train, seed=seed))
                ckpt = _train(c, data, "metaworld", out)
                rec = _evaluate(c, ckpt, "metaworld", out / "eval" / f"mw-{arm}-{view}-s{seed}",
                                episodes=args.episodes)
                conds.setdefault(f"{arm}/{view}", {})[seed] = _group(rec, seed, prompt="own")
                if arm == "after" and view == "near-optimal" and args.clip_ablation:
                    rec = _evaluate(_toggle_clip(c), ckpt, "metaworld",
                                    out / "eval" / f"mw-{arm}-{view}-clip-toggled-s{seed}",
                                    episodes=args.episodes)
                    conds.setdefault(f"{arm}/{view}-clip-toggled", {})[seed] = _group(
                        rec, seed, prompt="own")
    return conds


def _toggle_clip(cfg: Config) -> Config:
    """The same checkpoint sampled with diffusion.clip_denoised flipped (no retraining:
    sampling settings are not part of the training hash)."""
    return replace(cfg, diffusion=replace(cfg.diffusion,
                                          clip_denoised=not cfg.diffusion.clip_denoised))


def maze2d_part(args: argparse.Namespace, out: Path) -> dict[str, Outcomes]:
    """{"<arm>/<prompt>": outcomes} on the unseen maps (before/after demo, after layout)."""
    conds: dict[str, Outcomes] = {}
    shared = arm_config(args.preset, "after", args.set)
    data = _collect(shared, "maze2d", out)  # one dataset: see the module docstring
    arms = [("after", "demo", []), ("before", "demo", []),
            ("after", "layout", ["data.prompt_kind=layout"])]
    for arm, kind, more in arms:
        cfg = arm_config(args.preset, arm, [*args.set, *more])
        for seed in args.train_seeds:
            c = replace(cfg, model=replace(cfg.model, kind="mtdiff-p"),
                        train=replace(cfg.train, seed=seed))
            ckpt = _train(c, data, "maze2d", out)
            rec = _evaluate(c, ckpt, "maze2d", out / "eval" / f"maze-{arm}-{kind}-s{seed}",
                            episodes=args.episodes, maps=list(c.maze2d.unseen_maps))
            for prompt in ("own", "wrong"):
                conds.setdefault(f"{arm}/{kind}-{prompt}", {})[seed] = _group(
                    rec, seed, group="unseen", prompt=prompt)
            if arm == "after" and kind == "demo" and args.clip_ablation:
                rec = _evaluate(_toggle_clip(c), ckpt, "maze2d",
                                out / "eval" / f"maze-{arm}-{kind}-clip-toggled-s{seed}",
                                episodes=args.episodes, maps=list(c.maze2d.unseen_maps))
                conds.setdefault(f"{arm}/{kind}-own-clip-toggled", {})[seed] = _group(
                    rec, seed, group="unseen", prompt="own")
    return conds


def _row(name: str, cells: list[Interval | None]) -> str:
    return f"| {name} | " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def _diff_row(name: str, d: Interval) -> str:
    return f"| {name} | {d} | {'resolved' if d.resolved else 'not resolved'} |"


def table(conds: dict[str, Outcomes], n_boot: int, clip_default: bool = True) -> str:
    """Markdown: success per condition (before, after, after - before) and the orderings."""
    ci = {k: success_ci(v, n_boot=n_boot) for k, v in conds.items()}

    def diff(a: str, b: str) -> Interval:
        return difference_ci(conds[a], conds[b], n_boot=n_boot)

    lines = ["| condition | before | after | after - before |", "|---|---|---|---|"]
    rows = [("Meta-World MTDiff-P, near-optimal", "near-optimal"),
            ("Meta-World MTDiff-P, sub-optimal", "sub-optimal"),
            ("Maze2D unseen, right demo prompt", "demo-own"),
            ("Maze2D unseen, wrong demo prompt", "demo-wrong"),
            ("Maze2D unseen, layout prompt", "layout-own"),
            ("Maze2D unseen, wrong layout prompt", "layout-wrong")]
    for name, key in rows:
        b, a = ci.get(f"before/{key}"), ci.get(f"after/{key}")
        if a is None and b is None:
            continue
        d = diff(f"before/{key}", f"after/{key}") if a is not None and b is not None else None
        lines.append(_row(name, [b, a, d]))
    lines += ["", "| difference | estimate [95% CI] | |", "|---|---|---|"]
    orderings = [("near - sub", "sub-optimal", "near-optimal"),
                 ("right - wrong demo prompt", "demo-wrong", "demo-own"),
                 ("layout - wrong layout", "layout-wrong", "layout-own"),
                 ("layout - right demo prompt", "demo-own", "layout-own")]
    for arm in ("before", "after", "fix2-reverted"):
        for name, lo_key, hi_key in orderings:
            if f"{arm}/{lo_key}" in conds and f"{arm}/{hi_key}" in conds:
                lines.append(_diff_row(f"{arm}: {name}",
                                       diff(f"{arm}/{lo_key}", f"{arm}/{hi_key}")))
    # Fix 2 apart from Fixes 1 and 3 (only with --fix2-arm).
    for view in ("near-optimal", "sub-optimal"):
        mid = f"fix2-reverted/{view}"
        if mid in conds:
            lines.append(_diff_row(f"{view}: fix2-reverted (after on before's scripted data: "
                                   f"{success_ci(conds[mid], n_boot=n_boot)}) - before "
                                   "(Fixes 1 and 3)", diff(f"before/{view}", mid)))
            lines.append(_diff_row(f"{view}: after - fix2-reverted (Fix 2, the data)",
                                   diff(mid, f"after/{view}")))
    # x0-hat clipping alone: the after checkpoint sampled with clip_denoised flipped.
    for name, key in (("Meta-World near-optimal", "near-optimal"),
                      ("Maze2D unseen, right demo prompt", "demo-own")):
        if f"after/{key}-clip-toggled" in conds:
            on, off = f"after/{key}", f"after/{key}-clip-toggled"
            if not clip_default:
                on, off = off, on
            lines.append(_diff_row(f"after: {name}, clip on - clip off "
                                   f"(off: {success_ci(conds[off], n_boot=n_boot)})",
                                   diff(off, on)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the parts, print and write the table (and the raw outcomes as JSON)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=("smoke", "local", "paper"), default="local")
    p.add_argument("--out", required=True)
    p.add_argument("--part", choices=("all", "metaworld", "maze2d"), default="all")
    p.add_argument("--episodes", type=int, default=30, help="per task (map) and training seed")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--no-clip-ablation", dest="clip_ablation", action="store_false",
                   help="skip evaluating the after checkpoints with diffusion.clip_denoised "
                        "flipped (x0-hat clipping measured alone)")
    p.add_argument("--fix2-arm", action="store_true",
                   help="also train and evaluate the after arm on the before arm's scripted "
                        "Meta-World data (Fix 2 reverted: one more collection, 2 trainings, "
                        "2 evaluations), which separates Fix 2 from Fixes 1 and 3")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="an override for both arms (e.g. train.cpus_per_worker=1)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    conds: dict[str, Outcomes] = {}
    if args.part in ("all", "metaworld"):
        conds.update(metaworld_part(args, out))
    if args.part in ("all", "maze2d"):
        conds.update(maze2d_part(args, out))
    text = table(conds, args.bootstrap,
                 arm_config(args.preset, "after", args.set).diffusion.clip_denoised)
    seeds = len(args.train_seeds)
    note = (f"preset {args.preset}; {args.episodes} episodes per task (map) and training seed; "
            f"training seeds {args.train_seeds}; success = mean over tasks; 95% percentile "
            f"bootstrap, {args.bootstrap} resamples, over "
            + ("training seeds" if seeds > 1 else "episodes"
               " only (one training seed: training noise is not in the CIs)")
            + f"; {time.time() - t0:.0f} s")
    print(f"{text}\n\n{note}")
    (out / "fidelity.md").write_text(f"{text}\n\n{note}\n")
    raw = {k: {str(s): {t: v.tolist() for t, v in tasks.items()} for s, tasks in o.items()}
           for k, o in conds.items()}
    (out / "fidelity.json").write_text(json.dumps({"args": vars(args), "outcomes": raw}))
    print(f"written: {out / 'fidelity.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
