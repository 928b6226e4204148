"""Whole jobs of the `local` preset, predicted and measured one by one.

A `local` reproduction takes most of an hour on 2 cores; these are its jobs' bodies at
`local`'s sizes with shorter budgets, each run once through the code the job runs and
priced by the cost model (`mtdiff.experiment.workload`) for exactly that config:

- collect: one Meta-World task of the scripted collection (`_scripted_job`, 5,000 rows
  and the prompt demos), in process;
- train: a training through `mtdiff.train.run` (Ray Train, 1 worker) of the local-sized
  MTDiff-P for 100 steps at batch 80 (8 x 10 tasks), on an MT10-shaped dataset;
- evaluate: one evaluation batch (`mtdiff.eval.suites.run_job`: 6 envs of reach-v3, 100
  steps, DDIM-10 guided) of a local-sized MTDiff-P checkpoint, in process;
- synthesize: the synthesis stage (`synth.stage.run`) of a local-sized MTDiff-S (10,000
  transitions from a 5,000-row task), in process;
- offline: one TD3-BC run (the offline stage, `offline.stage.run`: 2,000 updates, 2
  evaluations of 20 episodes), in process.

In-process jobs are timed in busy seconds (`calibrate_common.Clock`: CPU time when the
machine's other work took the core), the training in wall seconds (several processes).
Predictions leave out a Ray task's start (not part of an in-process run).

    python benchmarks/cost_jobs.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from calibrate_common import LOCAL, Calibrator, Clock, one_cpu  # benchmarks/, beside this
from calibrate_data import collect_metaworld
from calibrate_networks import _checkpoint

from mtdiff.artifacts import Checkpoint, Dataset, Inputs
from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.cells import ClusterInfo, collect_job, evaluate_job, train_job
from mtdiff.experiment.cost import job_work
from mtdiff.experiment.jobs import Job
from mtdiff.experiment.rates import default_calibration, this_machine
from mtdiff.experiment.workload import fanned_out_start_s, job_start_s, suite_shape
from mtdiff.layout import Layout
from mtdiff.runtime import set_torch_threads

CLUSTER = ClusterInfo([{"CPU": 2.0, "GPU": 0.0}])


def main() -> None:
    """Run the five jobs, print predicted against measured."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    set_torch_threads(1)
    cal = default_calibration(False, this_machine())
    # local, with 5,000 rows per Meta-World task (the datasets below) and short budgets
    cfg = apply_overrides(get_preset("local"), [
        "metaworld.tasks=reach-v3", "metaworld.transitions_per_task=5000",
        "offline.steps=2000", "offline.eval_every=1000", "eval.max_steps=100"])
    rows: list[dict[str, Any]] = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        lay = Layout.at(tmp / "run")
        c = Calibrator("cost-jobs", tmp)  # its collection helper writes the datasets

        def row(name: str, predicted: float, measured: float, clock: str) -> None:
            rows.append({"job": name, "predicted_s": round(predicted, 2),
                         "measured_s": round(measured, 2), "clock": clock,
                         "ratio": round(predicted / measured, 3)})
            print(f"{name:<58} predicted {predicted:8.1f} s  measured {measured:8.1f} s "
                  f"({clock})  ratio {predicted / measured:5.2f}", flush=True)

        # collect: the reach-v3 task of a 5,000-row scripted collection
        cjob = collect_job(apply_overrides(cfg, ["metaworld.transitions_per_task=5000"]), lay,
                           "metaworld")
        work = job_work(cjob, cal)
        names = [t.task for t in suite_shape(cjob.cfg, "metaworld").plan.jobs]
        pred = work.tasks[names.index("reach-v3")].seconds - fanned_out_start_s(cal, "metaworld")
        with Clock() as clk:
            mw = collect_metaworld(c, 5000)
        row("collect: reach-v3 task, 5,000 scripted rows + prompts", pred, clk.busy, "busy")

        # train: 100 steps of the local MTDiff-P at batch 80 on an MT10-shaped dataset
        from mtdiff.data.random_data import write_random_dataset
        from mtdiff.train.stage import run as train_stage

        mt10 = tmp / "mt10"
        write_random_dataset(mt10, tasks=10, episodes=10, episode_len=500, obs_dim=39,
                             act_dim=4)
        tcfg = apply_overrides(get_preset("local"), [
            "metaworld.transitions_per_task=5000", "train.steps=100", "train.log_every=50",
            "train.checkpoint_every=50", "model.kind=mtdiff-p"])
        tjob = train_job(tcfg, lay, "metaworld", "collect/metaworld", "x", "metaworld/t",
                         {"suite": "metaworld", "method": "mtdiff-p"}, CLUSTER)
        pred = job_work(tjob, cal).tasks[0].seconds
        t0 = time.perf_counter()
        train_stage(one_cpu(tcfg), Inputs(data=Dataset.at(mt10)), tmp / "train")
        row("train: local MTDiff-P, 100 steps at batch 80 (Ray Train)", pred,
            time.perf_counter() - t0, "wall")

        # evaluate: one batch of 6 envs x 100 steps
        from mtdiff.eval.suites import EvalJob, run_job

        ckpt, pcfg = _checkpoint(mw, "mtdiff-p", LOCAL, tmp / "ckpt-p")
        ecfg = apply_overrides(cfg, ["model.kind=mtdiff-p"])
        ejob = evaluate_job(ecfg, lay, tjob, CLUSTER)
        pred = job_work(ejob, cal).tasks[0].seconds - fanned_out_start_s(cal, "metaworld")
        with Clock() as clk:
            run_job(EvalJob("metaworld", "reach-v3", 0, ecfg.eval.episodes, 100),
                    str(ckpt), ecfg.diffusion, None, cfg=ecfg)
        row("evaluate: 1 batch, 6 envs x 100 steps, DDIM-10 guided", pred, clk.busy, "busy")

        # synthesize: 10,000 transitions of a local MTDiff-S
        from mtdiff.synth.stage import run as synthesize

        sckpt, _ = _checkpoint(mw, "mtdiff-s", LOCAL, tmp / "ckpt-s")
        sjob = Job("synthesize/reach-v3/s0", "synthesize", cfg, {"task": "reach-v3"},
                   resources={"CPU": 1.0}, params={"data_job": "collect/metaworld"})
        pred = job_work(sjob, cal).tasks[0].seconds - job_start_s(cal, "metaworld")
        with Clock() as clk:
            synthesize(apply_overrides(cfg, ["tracking.enabled=false"]),
                       Inputs(model=Checkpoint.find(sckpt), data=Dataset.at(mw),
                              task="reach-v3", view="near-optimal"), tmp / "synth")
        row("synthesize: local MTDiff-S, 10,000 transitions", pred, clk.busy, "busy")

        # offline: TD3-BC on the original data
        from mtdiff.offline.stage import run as offline

        ojob = Job("offline/reach-v3/original/s0", "offline", cfg, {"task": "reach-v3"},
                   resources={"CPU": 1.0},
                   params={"data": "original", "data_job": "collect/metaworld"})
        pred = job_work(ojob, cal).tasks[0].seconds - job_start_s(cal, "metaworld")
        with Clock() as clk:
            offline(cfg, Inputs(data=Dataset.at(mw), task="reach-v3", view="near-optimal",
                                variant="original", seed=0), tmp / "td3bc")
        row("offline: TD3-BC, 2,000 updates + 2 x 20 episodes", pred, clk.busy, "busy")
    print(f"load average at start {load0:.1f}, at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": load0,
                                               "load_end": os.getloadavg()[0],
                                               "jobs": rows}, indent=1))


if __name__ == "__main__":
    main()
