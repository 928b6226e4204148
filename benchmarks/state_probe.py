"""Does MTDiff-P learn a state-dependent action at a small budget? A synthetic 2-task probe.

Data (fixed, `--data-seed`): per task s ~ N(0, I_20) and a = clip(tanh(W_task s) + 0.1 N(0, I_6)),
50 episodes x 200 steps, written in the real dataset format
(`mtdiff.data.random_data.write_tanh_policy_dataset`). For each training seed, MTDiff-P
(the preset's model, objective and sampler, with `--set` overrides) and the MLP behaviour
cloning reference MTBC are trained through the project's own set-up and learners for
`--steps` updates of `--batch` windows per task, then scored by the state-use check
(`mtdiff.eval.state_use`) on `--windows` seeded dataset windows per task:
rel_err = executed action's squared error / the task's mean action's (1.0 = no better).

    python benchmarks/state_probe.py --steps 1500 --batch 8 --seeds 0 1 2 \\
        --set train.loss=huber --set data.normalizer=minmax --set diffusion.clip_denoised=true

Ends with one JSON line: per method the rel_err of each condition per seed and its mean and
std over seeds, the verdicts per seed, and the settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff.cli import add_config_args, config_from_args
from mtdiff.config import Config, apply_overrides
from mtdiff.data.random_data import write_tanh_policy_dataset
from mtdiff.eval.state_use import CONDITIONS, check_checkpoint
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner

OBS, ACT, TASKS = 20, 6, 2


def make_data(root: Path, seed: int) -> Path:
    """The probe's dataset: one W per task (gain 1.5, so tanh is not saturated)."""
    rng = np.random.default_rng(seed)
    weights = {f"t{i}": rng.normal(size=(ACT, OBS)) * 1.5 / np.sqrt(OBS) for i in range(TASKS)}
    return write_tanh_policy_dataset(root, weights=weights, episodes=50, episode_len=200,
                                     noise=0.1, prompt_len=20, prompts_per_task=100, seed=seed)


def train_and_check(cfg: Config, data: Path, out: Path, *, seed: int, steps: int, batch: int,
                    windows: int) -> dict[str, Any]:
    """Train `cfg.model.kind` (seed `seed`) and return its state-use result."""
    setup = build_setup(cfg, data, seed=seed, batch_per_task=batch)
    torch.manual_seed(seed)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    t0 = time.time()
    for _ in range(steps):
        learner.update(to_torch(setup.sampler.sample(), torch.device("cpu")))
    train_s = time.time() - t0
    write_checkpoint(out, **learner.state_dict(), step=steps, meta=setup.meta)
    r = check_checkpoint(out, windows_per_task=windows, diffusion=cfg.diffusion)
    return {**{k: r[k] for k in (*CONDITIONS, "true_ci", "state_gap_ci", "prompt_gap_ci",
                                 "verdict_state", "verdict_prompt", "verdict_learnt")},
            "train_seconds": train_s, "check_seconds": r["seconds"]}


def _spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the probe, print a line per run and the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_args(p, default_preset="local")
    p.add_argument("--steps", type=int, default=1500, help="updates per training")
    p.add_argument("--batch", type=int, default=8, help="windows per task in a batch")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--windows", type=int, default=200, help="check windows per task")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--data", help="a collected dataset instead of the synthetic one (e.g. "
                   "local's Cheetah-vel): the check then runs on its windows")
    p.add_argument("--methods", nargs="+", default=["mtdiff-p", "mtbc"],
                   help="model kinds to train and check (any of mtdiff.methods' planners)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    from mtdiff.methods import get_method

    methods = {}
    for name in args.methods:
        m = get_method(name)
        methods[name] = apply_overrides(cfg, [f"model.kind={m.kind}", *m.overrides])
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="state-probe-") as tmp:
        data = Path(args.data).resolve() if args.data else make_data(Path(tmp) / "data",
                                                                      args.data_seed)
        for seed in args.seeds:
            for m, c in methods.items():
                r = train_and_check(c, data, Path(tmp) / f"{m}-s{seed}", seed=seed,
                                    steps=args.steps, batch=args.batch, windows=args.windows)
                runs[m].append(r)
                print(f"{m} seed {seed}: rel_err true {r['true']:.3f} shuffled history "
                      f"{r['shuffled_history']:.3f} wrong prompt {r['wrong_prompt']:.3f} | "
                      f"{r['verdict_state']}, {r['verdict_prompt']}, {r['verdict_learnt']} "
                      f"({r['train_seconds']:.0f} s training)", file=sys.stderr, flush=True)
    summary = {m: {c: {"per_seed": [r[c] for r in rs], **_spread([r[c] for r in rs])}
                   for c in CONDITIONS} for m, rs in runs.items()}
    for m, rs in runs.items():
        summary[m]["verdicts"] = [[r["verdict_state"], r["verdict_prompt"],
                                   r["verdict_learnt"]] for r in rs]
    print(json.dumps({"data": str(data) if args.data else "synthetic",
                      "steps": args.steps, "batch_per_task": args.batch, "seeds": args.seeds,
                      "windows_per_task": args.windows, "preset": args.preset,
                      "overrides": args.overrides, "train.loss": cfg.train.loss,
                      "train.action_weight": getattr(cfg.train, "action_weight", None),
                      "data.normalizer": cfg.data.normalizer,
                      "diffusion.clip_denoised": cfg.diffusion.clip_denoised,
                      "results": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
