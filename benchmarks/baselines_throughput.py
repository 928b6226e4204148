"""Training samples/s of each baseline of Table 1 beside MTDiff-P's, same batch, one run.

The paper's configuration (`paper` preset: MTDiff-P with d=256, 6 layers, 4 heads, H=32,
J=20, L=2; the baselines' CORL / official-DT values; the DTs on the same GPT-2) and batch
(8 windows per task x 50 tasks = 400; "each baseline has the same batch size ... as
MTDiff") on a Meta-World-shaped dataset (obs 39, act 4) of real Parquet shards. Each
method runs the plain single-process loop the Ray Train workers run (sample a batch,
`learner.update`), fp32. The methods take their steps in rounds, one step each per round
in a rotating order, so a machine whose load drifts (a shared one) slows them alike; the
first round is a warm-up. Printed: samples/s over the timed steps, the slowest and
fastest step's rate, and the ratio to MTDiff-P (the baseline).

    python benchmarks/baselines_throughput.py [--steps 6] [--tasks 50] [--methods mtbc ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_random_dataset
from mtdiff.methods import get_method
from mtdiff.runtime import set_torch_threads
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner

METHODS = ("mtdiff-p", "mtbc", "mtiql", "mtcql", "mtdt", "promptdt", "mtdiff-p-unet")


def make(method: str, data: str, steps: int) -> tuple[Callable[[], None], int, int]:
    """(one training step of `method`, batch size, trained parameters)."""
    m = get_method(method)
    cfg = apply_overrides(get_preset("paper"), [f"model.kind={m.kind}", *m.overrides,
                                                "data.history=2", f"train.steps={steps}"])
    setup = build_setup(cfg, data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    learner = build_learner(cfg, setup, device)
    mods = learner.modules if hasattr(learner, "modules") else {"model": learner.model}
    params = sum(p.numel() for mod in mods.values() for p in mod.parameters())

    def step() -> None:
        out = learner.update(to_torch(setup.sampler.sample(), device))
        float(out["loss"])  # wait for the step (one host sync, as a logging step does)

    return step, setup.sampler.batch_size, params


def main() -> None:
    """Measure every method and print the table with the ratio to MTDiff-P."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="steps per method (first is warm-up)")
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be >= 2 (one warm-up step)")
    set_torch_threads(args.threads)
    methods = ["mtdiff-p", *[m for m in args.methods if m != "mtdiff-p"]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        write_random_dataset(data, tasks=args.tasks, episodes=10, episode_len=500, obs_dim=39,
                             act_dim=4)
        steps = {m: make(m, data, args.steps) for m in methods}
        seconds: dict[str, list[float]] = {m: [] for m in methods}
        for r in range(args.steps):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for m in order:
                t0 = time.perf_counter()
                steps[m][0]()
                if r > 0:  # round 0 is the warm-up
                    seconds[m].append(time.perf_counter() - t0)
            print(f"  round {r + 1}/{args.steps} done", flush=True)
        for m in methods:
            _, batch, params = steps[m]
            per_step = batch / np.array(seconds[m])  # samples/s of each timed step
            rows.append((m, batch * len(per_step) / sum(seconds[m]), batch, params,
                         per_step.min(), per_step.max()))
    base = rows[0][1]
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU, {args.threads} threads"
    print(f"\nTraining throughput, paper config, batch {rows[0][2]} ({args.tasks} tasks x 8), "
          f"{args.steps - 1} timed steps, {dev}")
    print(f"{'method':<16}{'label':<18}{'params':>12}{'samples/s':>12}{'(min-max step)':>18}"
          f"{'x MTDiff-P':>12}")
    for m, r, _, n, lo, hi in rows:
        print(f"{m:<16}{get_method(m).label:<18}{n:>12,}{r:>12.1f}{f'({lo:.1f}-{hi:.1f})':>18}"
              f"{r / base:>12.2f}")


if __name__ == "__main__":
    main()
