"""Budget curve: MTDiff-P against MTBC (and Prompt-DT) at several training budgets and seeds.

    python sweeps/budget_curve.py --preset local --out /abs/curve \\
        --data cheetah-vel=/abs/data/cheetah-vel --data metaworld=/abs/data/mt10 \\
        --budgets 500 1500 6000 --seeds 0 1 2

One Tune sweep per suite (an MLflow parent run, a child run per cell: method x budget x
training seed); each trial trains on Ray Train (its driver builds the TorchTrainer) and
evaluates the checkpoint on the suite, held-out tasks included. Budgets are training steps at
the preset's batch (`data.batch_per_task` x tasks); the table gives the samples too. Cells run
budget by budget (the paper objective's budgets first, then the largest first), so a
cut-short curve has whole budget points. `--paper-objective-at N`
adds MTDiff-P trained with the paper's plain loss (MSE, no first-action weight, z-score
normaliser, no x0 clip) at budget N: the before / after of the objective's defaults.

Writes OUT/curve.md, curve.json and curve.png (also logged to each suite's parent run).
Rerunning the same command resumes: finished cells are read back, a training resumes from its
checkpoint, and an evaluation made earlier is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtdiff.cli import (
    add_config_args,
    check_tracking,
    config_from_args,
    fail,
    tracked,
    writable_dir,
)
from mtdiff.config import config_hash
from mtdiff.config.sections import SUITES
from mtdiff.layout import MANIFEST, reference_file
from mtdiff.runtime import cluster_cpus, init_ray
from mtdiff.tracking.sweeps import log_to_run

# The paper's wording of the objective (the defaults are the authors' code's).
PAPER_OBJECTIVE = {"train.loss": "mse", "train.action_weight": 1.0,
                   "data.normalizer": "gaussian", "diffusion.clip_denoised": False}
DEFAULT_METHODS = {"cheetah-vel": ("mtdiff-p", "mtbc", "promptdt"),
                   "ant-dir": ("mtdiff-p", "mtbc", "promptdt")}
DEFAULT_VIEWS = {"metaworld": "sub-optimal"}
# Suites whose curve also gets a table per task: MT10's mean success hides which tasks a
# method solves at all.
PER_TASK_SUITES = ("metaworld",)


def _pairs(values: list[str], what: str) -> dict[str, str]:

    out = {}
    for v in values:
        if "=" not in v:
            fail(f"--{what} {v!r} is not SUITE=VALUE (e.g. --{what} cheetah-vel=/abs/dir)")
        k, _, x = v.partition("=")
        out[k.strip()] = x.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the curve's sweeps, then write its table and figure."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", action="append", required=True, metavar="SUITE=DIR",
                   help="a suite and its dataset (repeat for several suites)")
    p.add_argument("--budgets", type=int, nargs="+", default=[500, 1500, 6000],
                   help="training steps per cell, increasing")
    p.add_argument("--budgets-for", action="append", default=[], metavar="SUITE=A,B,C",
                   help="another suite's budgets (e.g. metaworld=300,1000,3000: its batch is "
                        "5x Cheetah-vel's at `local`, 10 tasks x 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--methods", nargs="+", help="model kinds for every suite (default: "
                   "mtdiff-p mtbc, and promptdt on cheetah-vel / ant-dir)")
    p.add_argument("--view", action="append", default=[], metavar="SUITE=VIEW",
                   help="dataset view per suite (default: metaworld=sub-optimal, else "
                        "near-optimal)")
    p.add_argument("--paper-objective-at", type=int, nargs="*", default=[], metavar="STEPS",
                   help="also train MTDiff-P with the paper's plain objective at these budgets")
    p.add_argument("--concurrent", type=int, help="trials at once (default: the CPUs)")
    p.add_argument("--out", required=True, help="the curve's folder (absolute paths are best)")
    p.add_argument("--name", default="budget-curve")
    p.add_argument("--report-only", action="store_true",
                   help="write the table and figure from the cells finished so far (a "
                        "running or cut-short curve), train nothing")
    add_config_args(p, sections=("data", "model", "diffusion", "methods", "train", "eval",
                                 "tracking"))
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    # Absolute: the paths go to Ray tasks and Tune trials that run in other directories.
    data = {k: str(Path(v).expanduser().resolve()) for k, v in _pairs(args.data, "data").items()}
    views = {**DEFAULT_VIEWS, **_pairs(args.view, "view")}

    for suite, d in data.items():
        if suite not in SUITES:
            fail(f"unknown suite {suite!r} in --data; use one of {', '.join(SUITES)}")
        if not (Path(d) / MANIFEST).exists():
            fail(f"{d} is not a finished dataset (no {MANIFEST}); collect one with "
                 f"`python pipelines/collect.py --suite {suite} --out DIR`")
    budgets = {suite: args.budgets for suite in data}
    for suite, spec in _pairs(args.budgets_for, "budgets-for").items():
        try:
            budgets[suite] = [int(x) for x in spec.split(",")]
        except ValueError:
            fail(f"--budgets-for {suite}={spec}: give integers, e.g. {suite}=300,1000,3000")
    for suite, b in budgets.items():
        if sorted(b) != b or len(set(b)) != len(b) or min(b) < 1:
            fail(f"budgets {b} for {suite} must be distinct, positive and increasing, "
                 "e.g. 500 1500 6000")
    out = writable_dir(args.out)
    check_tracking(cfg.tracking)

    from ray import tune

    from mtdiff.data.io import atomic_write_json, atomic_write_text
    from mtdiff.report import budget
    from mtdiff.sweeps import budget_trial, exit_code, run_sweep_or_exit
    from mtdiff.sweeps.records import TRIALS, read_records

    bases = {suite: _with_view(cfg, views[suite]) if suite in views else cfg for suite in data}
    concurrent = 0
    if not args.report_only:  # reading records back needs no cluster
        init_ray()
        concurrent = args.concurrent or max(1, int(cluster_cpus()))
    scores, task_scores, samples, parents, code = {}, {}, {}, [], 0
    for suite, d in data.items():
        methods = args.methods or list(DEFAULT_METHODS.get(suite, ("mtdiff-p", "mtbc")))
        # The budgets the paper objective also trains at first (the objective's before /
        # after is then whole early), then the largest: whether more compute helps is
        # known before the smaller points fill in. Cells run budget by budget, so a
        # cut-short curve has whole budget points.
        order = sorted(budgets[suite], key=lambda b: (b not in args.paper_objective_at, -b))
        arms = [("", {"train.steps": tune.grid_search(order),
                      "train.seed": tune.grid_search(args.seeds),
                      "model.kind": tune.grid_search(methods)})]
        if args.paper_objective_at:  # first: the objective's before / after is its own table
            arms.insert(0, ("paper objective", {
                "train.steps": tune.grid_search(args.paper_objective_at),
                "train.seed": tune.grid_search(args.seeds), "model.kind": "mtdiff-p",
                "objective": PAPER_OBJECTIVE}))
        for arm, space in arms:
            name = f"{args.name}-{suite}" + ("-paper-objective" if arm else "")
            base = bases[suite]
            # A trial holds half a CPU while its trainer holds one: two trials at once keep
            # two CPUs busy (one trains while the other evaluates), and never deadlock.
            if args.report_only:
                recs = list(read_records(out / "sweeps" / name / TRIALS).values())
            else:
                res = run_sweep_or_exit(name, base, space, budget_trial,
                                        storage=out / "sweeps", cpus_per_trial=0.5,
                                        trainer_cpus=1, max_concurrent=concurrent,
                                        trial_config={"data": d, "train_out": out / "train",
                                                      "out": out / "evals", "suite": suite})
                recs = list(read_records(Path(res["folder"]) / TRIALS).values())
                parents.append(res["parent_run_id"])
                code = max(code, exit_code(res))
            scores.update(budget.cells(recs, suite, arm))
            if suite in PER_TASK_SUITES:
                task_scores.update(budget.task_cells(recs, suite, arm))
            samples.update(budget.samples_of(recs, suite))
    reference, dataset_tasks = [], {}
    for suite, d in data.items():
        base = bases[suite]
        doc = _reference(base, suite, d, out / "reference")
        reference += budget.reference_rows(doc, suite, base.data.view)
        dataset_tasks.update(budget.dataset_per_task(doc, suite, base.data.view))
    rows, gap_rows = budget.table(scores, samples), budget.gaps(scores)
    if args.paper_objective_at:  # the objective's before / after, paired by seed
        gap_rows += budget.gaps(scores, budget.PLANNER, f"{budget.PLANNER} (paper objective)")
    versus = budget.versus_reference(scores, reference)
    task_rows = budget.task_table(task_scores, dataset_tasks)
    md = budget.markdown(rows, gap_rows, reference, versus)
    if task_rows:
        md += "\nPer task (success rate where the suite has one):\n\n" + \
            budget.task_markdown(task_rows)
    atomic_write_text(out / "curve.md", md)
    atomic_write_json(out / "curve.json", {"rows": rows, "gaps": gap_rows,
                                           "reference": reference, "versus_zero_action": versus,
                                           "tasks": task_rows})
    fig = budget.figure(rows, out / "curve.png", reference)
    for run_id in parents:
        for f in (out / "curve.md", out / "curve.json", fig):
            log_to_run(cfg, run_id, f)
    print(md)
    print(f"table, figure: {out / 'curve.md'}, {fig}")
    return code


def _reference(cfg, suite: str, data: str, root: Path) -> dict:
    """The zero action, a uniform random policy and the dataset's own scores on the jobs
    the cells are evaluated on (read back when made earlier with the same settings)."""
    # (after argparse: pulls in torch; --help and bad arguments stay fast)
    from mtdiff.artifacts import Dataset, Inputs
    from mtdiff.eval.reference import run

    out = root / f"{suite}-{config_hash({'data': str(Path(data).resolve()), 'eval': cfg.eval})}"
    done = reference_file(out, suite)
    if done.exists():
        return json.loads(done.read_text())
    return run(tracked(cfg, False), Inputs(data=Dataset.at(data), suite=suite), out).doc


def _with_view(cfg, view: str):
    from dataclasses import replace

    return replace(cfg, data=replace(cfg.data, view=view))


if __name__ == "__main__":
    sys.exit(main())
