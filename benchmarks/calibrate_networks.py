"""Network rates for `benchmarks/calibrate.py`: the methods' training steps per family and
their planners' / policies' calls in evaluation batches, each family's line fitted over
model sizes and batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from calibrate_common import (  # benchmarks/, beside this script
    LOCAL,
    PAPER,
    SMOKE,
    Calibrator,
    Clock,
    _cfg,
    timed,
)

from mtdiff.config import Config, apply_overrides
from mtdiff.eval.policy import load_policy
from mtdiff.eval.suites import EvalJob, run_job
from mtdiff.experiment.flops import Net, network
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner


def learner_at(data: Path, kind: str, size: list[str], batch_per_task: int,
               device: torch.device, *more: str) -> tuple[Any, Any, Net]:
    """(learner, setup, network) of the method `kind` at `size` and `batch_per_task` on
    the Meta-World-shaped dataset at `data` (`more`: further overrides)."""
    cfg = _cfg(kind, size, f"data.batch_per_task={batch_per_task}", *more)
    setup = build_setup(cfg, data, batch_per_task=batch_per_task)
    learner = build_learner(cfg, setup, device)
    return learner, setup, network(cfg, "metaworld", 39, 4, len(setup.meta["tasks"]))


def train_points(data: Path, kind: str, size: list[str], batches: list[int],
                 min_s: float = 1.5) -> list[tuple[str, float, float]]:
    """(model size, FLOPs per step, seconds per step) of the method's learner at each
    batch per task."""
    pts = []
    for m in batches:
        learner, setup, net = learner_at(data, kind, size, m, torch.device("cpu"))
        batch = setup.sampler.batch_size
        secs = timed(lambda lr=learner, st=setup: lr.update(to_torch(st.sampler.sample(), "cpu")),
                     min_s=min_s, warmup=2)
        pts.append((net.size, batch * net.train_flops, secs))
        print(f"    {kind} {net.size} batch {batch}: {secs * 1e3:.1f} ms/step",
              flush=True)
    return pts


def training(c: Calibrator, data: Path) -> None:
    """The four families' training steps."""
    gpt = (train_points(data, "mtdiff-p", SMOKE, [1, 4])
           + train_points(data, "mtdiff-p", LOCAL, [2, 8])
           + train_points(data, "mtdiff-s", LOCAL, [8])
           + train_points(data, "mtdiff-p", PAPER, [1, 4], min_s=2.0))
    c.put_line("train.gpt2", gpt, "DiffusionLearner.update, MTDiff-P smoke/local/paper-sized "
               "and MTDiff-S local-sized, 10-task Meta-World-shaped batches")
    c.put_line("train.unet", train_points(data, "mtdiff-p-unet", LOCAL, [2, 8]),
               "DiffusionLearner.update, U-Net backbone at d_model 128 (dim 32)")
    c.put_line("train.dt", train_points(data, "promptdt", LOCAL, [2, 8])
               + train_points(data, "mtdt", LOCAL, [8]),
               "PromptDTLearner / MTDTLearner.update, local-sized GPT-2, context 20")
    c.put_line("train.mlp", train_points(data, "mtbc", [], [8])
               + train_points(data, "mtiql", [], [8, 40]) + train_points(data, "mtcql", [], [8]),
               "MTBC / MTIQL / MTCQL learners' update at the paper's widths")


def untrained_checkpoint(data: Path, kind: str, size: list[str], out: Path, *more: str
                        ) -> tuple[Path, Config]:
    """An untrained checkpoint of `kind` on `data` (as the Ray Train loop writes one),
    planning with DDIM-10 unless `more` overrides say otherwise."""
    cfg = _cfg(kind, size, "diffusion.sample_steps=10", "diffusion.sampler=ddim", *more)
    setup = build_setup(cfg, data)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, **learner.state_dict(), step=0, meta=setup.meta)
    return out, cfg


def planning(c: Calibrator, mw: Path) -> None:
    """Evaluation batches of untrained checkpoints on reach-v3: seconds per denoiser or
    policy call from their plan time."""
    lines: dict[str, list[tuple[str, float, float]]] = {}
    loads = []
    runs = (("mtdiff-p", SMOKE, (2, 8), 5), ("mtdiff-p", LOCAL, (1, 8), 10),
            ("mtdiff-p", PAPER, (1, 4), 5), ("mtdiff-p-unet", LOCAL, (1, 8), 10),
            ("promptdt", LOCAL, (1, 8), 0), ("mtdt", LOCAL, (1, 8), 0),
            ("mtbc", [], (1, 8), 0), ("mtiql", [], (8,), 0))
    for i, (kind, size, envs, steps) in enumerate(runs):
        ckpt, cfg = untrained_checkpoint(mw, kind, size, c.tmp / f"ckpt-{i}")
        if steps:
            cfg = apply_overrides(cfg, [f"diffusion.sample_steps={steps}"])
        net = network(cfg, "metaworld", 39, 4, 1)
        with Clock() as clk:
            load_policy(ckpt, diffusion=cfg.diffusion)
        loads.append(clk.busy)
        for n in envs:
            # past the Decision Transformers' context (20 steps): their calls at full length
            T = 12 if net.diffusion else 45
            res = run_job(EvalJob("metaworld", "reach-v3", 0, n, T, stop_on_success=False),
                          str(ckpt), cfg.diffusion, None, cfg=cfg)
            with Clock() as clk:  # the second: warm
                res = run_job(EvalJob("metaworld", "reach-v3", 1, n, T, stop_on_success=False),
                              str(ckpt), cfg.diffusion, None, cfg=cfg)
            per_plan = res["plan_seconds"] * clk.share / T
            if net.diffusion:
                rows, calls = 2 * n, cfg.diffusion.sample_steps
                key = f"denoise.{net.family}"
            else:
                rows, calls = n, 1
                key = f"act.{net.family}"
            lines.setdefault(key, []).append((net.size, rows * net.call_flops, per_plan / calls))
            print(f"    {kind} {size[0] if size else ''} {n} envs: {per_plan * 1e3:.2f} ms/plan",
                  flush=True)
    how = {"denoise.gpt2": "run_job plan time of MTDiff-P smoke/local/paper-sized planners "
                           "(guided DDIM) / denoiser calls, 1-8 envs on reach-v3",
           "denoise.unet": "run_job plan time of the U-Net planner (d_model 128) / calls",
           "act.dt": "run_job policy time of Prompt-DT and MT-DT (local-sized), 1 and 8 envs",
           "act.mlp": "run_job policy time of MTBC and MTIQL, 1 and 8 envs"}
    for key, pts in lines.items():
        c.put_line(key, pts, how[key])
    c.put("policy_load_s", float(np.median(loads)), "s",
          "load_policy of untrained checkpoints (median over the methods)")
