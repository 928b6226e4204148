"""Training samples/s: eager vs compiled steps (`train.compile`); with `--methods`, each
Table 1 baseline beside MTDiff-P; with `--precision` / `--ray`, the paper's configuration
as a plain loop vs Ray Train, fp32 vs bf16.

Eager vs compiled (unless `--skip-compile`): the methods' own learners (`DiffusionLearner`,
`DTLearner`) step the same batches with `train.compile=off` and `=inductor`, timed in
rotating blocks so a busy machine slows both alike, on one thread (`--threads`). Rows: the
local preset's MTDiff-P at its Meta-World batch (8 x 10 tasks) and its MuJoCo batch
(32 x 2), the local-sized Prompt-DT, and the paper-sized MTDiff-P (batch 400).

Methods (`--methods [M ...]`, the flag alone: all of `METHODS`): the paper's configuration
(`paper` preset; the baselines' CORL / official-DT values; the DTs on the same GPT-2) and
batch ("each baseline has the same batch size ... as MTDiff"), fp32, each method's plain
single-process loop (sample a batch, `learner.update`), `--threads` threads. The methods
take `--steps` rounds of one step each in a rotating order, so a load that drifts slows
them alike; the first round is a warm-up. Printed: samples/s over the timed steps, the
slowest and fastest step's rate, and the ratio to MTDiff-P (the baseline).

The last line is one JSON object: `compiled_speedup` (local-sized MTDiff-P, Meta-World
batch, compiled / eager samples/s), each row and the compile seconds (the first two
compiled steps), unless --skip-compile; with --methods, `methods` (each one's samples/s
and ratio to MTDiff-P).

With `--bf16`, each eager / compiled row is also timed under bf16 autocast (`train.bf16`)
in the same rotation, and the JSON gains `bf16_speedup` (local MTDiff-P, bf16 eager / fp32
eager). That is a precision choice, not a compiled step at parity: on a CPU with AMX tiles
its matmuls run on them, elsewhere bf16 can be slower than fp32.

    python benchmarks/train_throughput.py [--threads 1] [--skip-paper] [--skip-compile] [--bf16]
        [--methods [mtbc mtdt ...]] [--steps 6] [--tasks 50] [--precision] [--ray]

Precision (`--precision`, `--ray`): the paper model (d=256, 6 layers, 4 heads, H=32, J=20,
L=2, obs 39, act 4) and batch (8 per task x 50 tasks = 400) on a Meta-World-shaped dataset
of real Parquet shards, all cores. In one run:

- a plain single-process loop (the baseline), fp32 and bf16 autocast, with the attention
  path chosen by `attn_impl="auto"` (plain math on CPU, fused SDPA on CUDA) and, for
  comparison, the fused SDPA kernel forced;
- Ray Train (`TorchTrainer`, V2) with 1 worker (all cores) and 2 workers (DDP, cores
  split), fp32 and bf16; steady-state rate from the workers' own timing, plus the fixed
  cost of `fit()`;
- model FLOPs per sample (torch's FlopCounterMode, forward + backward) and the model FLOP
  utilisation against this CPU's measured matmul rate (fp32 and bf16).

`gpu_check.py` times its training steps with `step_rate` (no Ray, MLflow or MuJoCo at
import: Ray is imported only by --ray).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from planning_speed import matmul_rate, timed  # benchmarks/planning_speed.py, beside this
from torch.utils.flop_counter import FlopCounterMode

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_random_dataset
from mtdiff.methods import get_method
from mtdiff.runtime import set_torch_threads
from mtdiff.train.core import build_setup, diffusion_step_loss, to_torch
from mtdiff.train.learner import build_learner

COMPILE_ROWS = (  # name, preset, overrides, dataset (tasks, obs, act), timed steps per block
    ("MTDiff-P local, batch 8x10", "local", [], (10, 39, 4), 6),
    ("MTDiff-P local, batch 32x2", "local", ["data.batch_per_task=32"], (2, 17, 6), 6),
    ("Prompt-DT local, batch 8x10", "local", ["model.kind=promptdt"], (10, 39, 4), 6),
    ("MTDiff-P paper, batch 8x50", "paper", ["data.history=2"], (50, 39, 4), 2),
)
METHODS = ("mtdiff-p", "mtbc", "mtiql", "mtcql", "mtdt", "promptdt", "mtdiff-p-unet")
CPU = torch.device("cpu")


def step_rate(step: Callable[[], Any], steps: int, dev: torch.device,
              warmup: bool = True) -> tuple[float, float]:
    """(steps/s over `steps` timed steps, FLOPs of one step): one step under
    FlopCounterMode, then (if `warmup`) `steps` untimed steps, then the timed ones."""
    with FlopCounterMode(display=False) as fc:
        step()
    secs = timed(lambda: [step() for _ in range(steps)], dev, 1, warmup)
    return steps / secs, float(fc.get_total_flops())


def rotating(steps: dict[str, Callable[[], Any]], rounds: int, per_round: int = 1,
             warmup: int = 0) -> dict[str, list[float]]:
    """Seconds per step of each of `steps` in each round after the first `warmup`: every
    round runs each `per_round` times, the order rotating from round to round, so a
    machine whose load drifts slows them alike."""
    names = list(steps)
    seconds: dict[str, list[float]] = {m: [] for m in names}
    for r in range(rounds):
        for m in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(per_round):
                steps[m]()
            if r >= warmup:
                seconds[m].append((time.perf_counter() - t0) / per_round)
    return seconds


def learner_for(preset: str, overrides: list[str], data: str, dev: torch.device):
    """(learner, setup) of `preset` with `overrides` on the dataset at `data`."""
    cfg = apply_overrides(get_preset(preset), overrides)
    torch.manual_seed(0)
    setup = build_setup(cfg, data)
    return build_learner(cfg, setup, dev), setup


def learner_step(learner: Any, next_batch: Callable[[], Any]) -> Callable[[], float]:
    """One `learner.update` on `next_batch()`, waited for (one host sync, as a logging
    step does)."""
    return lambda: float(learner.update(next_batch())["loss"])


def dataset(tmp: str, tasks: int, obs: int = 39, act: int = 4, episodes: int = 4,
            episode_len: int = 200) -> str:
    """A random dataset of these shapes under `tmp` (written once)."""
    data = os.path.join(tmp, f"data-{tasks}-{obs}-{act}-{episodes}x{episode_len}")
    if not os.path.exists(data):
        write_random_dataset(data, tasks=tasks, episodes=episodes, episode_len=episode_len,
                             obs_dim=obs, act_dim=act)
    return data


def compile_rows(tmp: str, threads: int, blocks: int, skip_paper: bool,
                 bf16: bool = False) -> list[dict]:
    """Eager and compiled samples/s of each `COMPILE_ROWS` entry (module docstring); with
    `bf16`, also both under `train.bf16` autocast, timed in the same rotation."""
    set_torch_threads(threads)
    modes = {"off": ["train.compile=off"], "inductor": ["train.compile=inductor"]}
    if bf16:
        modes |= {"off+bf16": ["train.compile=off", "train.bf16=true"],
                  "inductor+bf16": ["train.compile=inductor", "train.bf16=true"]}
    rows = []
    for name, preset, over, (tasks, obs, act), n in COMPILE_ROWS:
        if skip_paper and preset == "paper":
            continue
        data = dataset(tmp, tasks, obs, act)
        learners, batches, compile_s = {}, None, 0.0
        for mode, settings in modes.items():
            learners[mode], setup = learner_for(preset, [*over, *settings], data, CPU)
            if batches is None:
                batches = [to_torch(setup.sampler.sample(), CPU) for _ in range(4)]
            t0 = time.perf_counter()
            for b in batches[:2]:  # compiles (inductor) and warms up
                float(learners[mode].update(b)["loss"])
            if mode == "inductor":
                compile_s = time.perf_counter() - t0
        batch = len(batches[0][next(iter(batches[0]))])
        times = rotating({m: learner_step(lr, itertools.cycle(batches).__next__)
                          for m, lr in learners.items()}, blocks, n)
        med = {m: sorted(t)[blocks // 2] for m, t in times.items()}
        row = {"name": name, "batch": batch, "threads": threads,
               "eager_samples_per_s": round(batch / med["off"], 1),
               "compiled_samples_per_s": round(batch / med["inductor"], 1),
               "speedup": round(med["off"] / med["inductor"], 3),
               "compile_s": round(compile_s, 1)}
        line = (f"{name:<30}{row['eager_samples_per_s']:>10.1f}"
                f"{row['compiled_samples_per_s']:>10.1f}{row['speedup']:>9.2f}x"
                f"{row['compile_s']:>10.1f}")
        if bf16:
            # Not at parity: bf16 rounds every matmul input (relative error ~2e-3 against
            # fp32's ~5e-7), so these are a precision choice's rates, not compiling's.
            row |= {"eager_bf16_samples_per_s": round(batch / med["off+bf16"], 1),
                    "compiled_bf16_samples_per_s": round(batch / med["inductor+bf16"], 1),
                    "bf16_speedup": round(med["off"] / med["off+bf16"], 3),
                    "compiled_bf16_speedup": round(med["off"] / med["inductor+bf16"], 3)}
            line += (f"{row['eager_bf16_samples_per_s']:>10.1f}{row['bf16_speedup']:>6.2f}x"
                     f"{row['compiled_bf16_samples_per_s']:>12.1f}"
                     f"{row['compiled_bf16_speedup']:>6.2f}x")
        print(line, flush=True)
        rows.append(row)
    return rows


def method_rows(tmp: str, args: argparse.Namespace) -> list[dict]:
    """Samples/s of each --methods entry beside MTDiff-P's (module docstring)."""
    set_torch_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = dataset(tmp, args.tasks, episodes=10, episode_len=500)
    methods = ["mtdiff-p", *[m for m in args.methods if m != "mtdiff-p"]]
    steps, batch, params = {}, {}, {}
    for name in methods:
        m = get_method(name)
        learner, setup = learner_for("paper", [f"model.kind={m.kind}", *m.overrides,
                                               "data.history=2", f"train.steps={args.steps}"],
                                     data, dev)
        mods = learner.modules if hasattr(learner, "modules") else {"model": learner.model}
        params[name] = sum(p.numel() for mod in mods.values() for p in mod.parameters())
        batch[name] = setup.sampler.batch_size
        steps[name] = learner_step(learner, lambda s=setup: to_torch(s.sampler.sample(), dev))
    seconds = rotating(steps, args.steps, warmup=1)
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"\nTraining throughput, paper config, batch {batch['mtdiff-p']} ({args.tasks} tasks "
          f"x 8), {args.steps - 1} timed steps, {where}")
    print(f"{'method':<16}{'label':<18}{'params':>12}{'samples/s':>12}{'(min-max step)':>18}"
          f"{'x MTDiff-P':>12}")
    rate = {m: batch[m] * len(seconds[m]) / sum(seconds[m]) for m in methods}
    rows = []
    for m in methods:
        per_step = batch[m] / np.array(seconds[m])
        ratio = rate[m] / rate["mtdiff-p"]
        span = f"({per_step.min():.1f}-{per_step.max():.1f})"
        print(f"{m:<16}{get_method(m).label:<18}{params[m]:>12,}{rate[m]:>12.1f}{span:>18}"
              f"{ratio:>12.2f}")
        rows.append({"method": m, "batch": batch[m], "params": params[m],
                     "samples_per_s": round(rate[m], 1), "ratio_vs_mtdiff_p": round(ratio, 3)})
    return rows


def paper_cfg(bf16: bool, steps: int, workers: int = 1):
    """The paper's model/batch with a short run."""
    return apply_overrides(get_preset("paper"), [
        f"train.bf16={bf16}", f"train.steps={steps}", "train.log_every=2",
        f"train.checkpoint_every={10**6}", f"train.num_workers={workers}", "data.history=2",
        "model.dropout=0.0"])


def plain_loop(data: str, bf16: bool, steps: int, attn: str) -> tuple[float, float]:
    """(samples/s after one warm-up step, FLOPs per sample) of a single-process loop."""
    cfg = paper_cfg(bf16, steps)
    setup = build_setup(cfg, data)
    if attn != "auto":
        for m in setup.model.modules():
            if hasattr(m, "attn_impl"):
                m.attn_impl = attn
    opt = torch.optim.Adam(setup.model.parameters(), lr=cfg.train.lr)

    def step() -> None:
        batch = to_torch(setup.sampler.sample(), CPU)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion_step_loss(setup.model, setup.schedule, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(setup.model.parameters(), 1.0)
        opt.step()

    rate, flops = step_rate(step, steps - 1, CPU, warmup=False)
    return rate * setup.sampler.batch_size, flops / setup.sampler.batch_size


def ray_train(data: str, out: str, bf16: bool, steps: int, workers: int) -> tuple[float, float]:
    """(steady samples/s reported by rank 0, wall seconds of fit())."""
    from mtdiff.train.ray_train import build_trainer

    cfg = paper_cfg(bf16, steps, workers)
    cpus = max(1, (os.cpu_count() or 2) // workers)
    trainer = build_trainer(cfg, data, out, run_name=f"bench-{workers}w-{bf16}",
                            cpus_per_worker=cpus)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    if result.error:
        raise result.error
    return float(result.metrics["samples_per_s"]), wall


def main() -> None:
    """Run the eager / compiled rows and the optional tables; JSON last."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the compiled and --methods rows")
    p.add_argument("--blocks", type=int, default=5,
                   help="rotating eager / compiled timing blocks (median taken)")
    p.add_argument("--skip-paper", action="store_true", help="no paper-sized compiled row")
    p.add_argument("--skip-compile", action="store_true", help="no eager / compiled rows")
    p.add_argument("--bf16", action="store_true",
                   help="also: each eager / compiled row under bf16 autocast (train.bf16), with "
                        "its ratio to fp32 eager")
    p.add_argument("--methods", nargs="*", choices=METHODS, default=None, metavar="METHOD",
                   help="also: these methods' samples/s beside MTDiff-P's, paper config; the "
                        f"flag alone: {' '.join(METHODS)}")
    p.add_argument("--precision", action="store_true",
                   help="also: the paper config's plain loop, fp32 vs bf16, attention paths")
    p.add_argument("--ray", action="store_true", help="also: Ray Train 1 and 2 workers")
    p.add_argument("--steps", type=int, default=6,
                   help="steps of the --methods (first is warm-up), --precision, --ray runs")
    p.add_argument("--tasks", type=int, default=50)
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be >= 2 (one warm-up step)")
    if args.methods is not None and not args.methods:
        args.methods = list(METHODS)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_compile:
            bf16_head = (f"{'bf16/s':>10}{'ratio':>7}{'comp bf16/s':>12}{'ratio':>7}"
                         if args.bf16 else "")
            print(f"{'eager vs compiled':<30}{'eager/s':>10}{'comp/s':>10}{'ratio':>10}"
                  f"{'compile s':>10}{bf16_head}  (samples/s, {args.threads} thread(s))")
            rows = compile_rows(tmp, args.threads, args.blocks, args.skip_paper, args.bf16)
            out["compiled_speedup"] = rows[0]["speedup"]  # MTDiff-P local, batch 8x10
            if args.bf16:
                out["bf16_speedup"] = rows[0]["bf16_speedup"]
            out["rows"] = rows
        if args.methods is not None:
            out["methods"] = method_rows(tmp, args)
        if args.precision or args.ray:
            precision_tables(tmp, args)
    if out:
        print(json.dumps(out))


def precision_tables(tmp: str, args: argparse.Namespace) -> None:
    """The paper config: plain loop fp32 / bf16 / attention paths and Ray Train."""
    threads = os.cpu_count() or 2
    set_torch_threads(threads)  # as the Ray Train workers set it (denormals flushed)
    peak32, peak16 = (matmul_rate(CPU, 2048, dt, reps=8, rounds=1)
                      for dt in (torch.float32, torch.bfloat16))
    print(f"CPU matmul rate ({threads} threads): fp32 {peak32 / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak16 / 1e9:.0f} GFLOP/s")
    rows = []
    data = dataset(tmp, args.tasks, episodes=10, episode_len=500)
    for bf16 in (False, True):
        for attn in ("auto", "sdpa"):
            rate, flops = plain_loop(data, bf16, args.steps, attn)
            rows.append((f"plain loop, {'bf16' if bf16 else 'fp32'}, attn={attn}", rate,
                         flops, bf16, None))
    if args.ray:
        from mtdiff.runtime import init_ray

        init_ray()
        for workers in (1, 2):
            for bf16 in (False, True):
                rate, wall = ray_train(data, os.path.join(tmp, "ray"), bf16, args.steps,
                                       workers)
                rows.append((f"Ray Train {workers} worker(s), {'bf16' if bf16 else 'fp32'}",
                             rate, rows[0][2], bf16, wall))
    print(f"\nbatch 400 (8 x {args.tasks} tasks), H=32, J=20, d=256, 6 layers, 4 heads; "
          f"{rows[0][2] / 1e9:.2f} GFLOP per sample (fwd+bwd)")
    print(f"{'configuration':<40}{'samples/s':>10}{'s/step':>8}{'GFLOP/s':>9}{'MFU':>7}"
          f"{'fit() s':>9}")
    for name, rate, flops, bf16, wall in rows:
        achieved = rate * flops
        mfu = achieved / (peak16 if bf16 else peak32)
        print(f"{name:<40}{rate:>10.1f}{400 / rate:>8.2f}{achieved / 1e9:>9.0f}{mfu:>7.0%}"
              f"{'' if wall is None else f'{wall:9.1f}'}")
    base = {r[0]: r[1] for r in rows}
    f32, b16 = base["plain loop, fp32, attn=auto"], base["plain loop, bf16, attn=auto"]
    print(f"\nbf16 / fp32 (plain loop): {b16 / f32:.2f}x")
    print(f"math / fused attention in bf16: "
          f"{b16 / base['plain loop, bf16, attn=sdpa']:.2f}x")
    if args.ray:
        for prec, plain in (("fp32", f32), ("bf16", b16)):
            r1 = base[f"Ray Train 1 worker(s), {prec}"]
            r2 = base[f"Ray Train 2 worker(s), {prec}"]
            print(f"Ray Train overhead at 1 worker, {prec}: {1 - r1 / plain:+.1%} of the plain "
                  f"loop's rate; 2 workers / 1 worker: {r2 / r1:.2f}x")


if __name__ == "__main__":
    main()
