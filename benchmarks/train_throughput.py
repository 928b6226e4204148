"""Training samples/s: eager vs compiled steps (`train.compile`), then, with
`--precision` / `--ray`, the paper's configuration as a plain loop vs Ray Train, fp32 vs bf16.

Eager vs compiled (always): the methods' own learners (`DiffusionLearner`, `DTLearner`)
step the same batches with `train.compile=off` and `=inductor`, timed in alternating
blocks so a busy machine slows both alike, on one thread (`--threads`). Rows: the local
preset's MTDiff-P at its Meta-World batch (8 x 10 tasks) and its MuJoCo batch (32 x 2),
the local-sized Prompt-DT, and the paper-sized MTDiff-P (batch 400). The last line is one
JSON object: `compiled_speedup` (local-sized MTDiff-P, Meta-World batch, compiled / eager
samples/s), each row, and the compile seconds (the first two compiled steps).

    python benchmarks/train_throughput.py [--threads 1] [--skip-paper] [--precision] [--ray]

Paper model (d=256, 6 layers, 4 heads, H=32, J=20, L=2, obs 39, act 4) and batch (8 per
task x 50 tasks = 400) on a Meta-World-shaped dataset of real Parquet shards. In one run:

- a plain single-process loop (the baseline), fp32 and bf16 autocast, with the attention
  path chosen by `attn_impl="auto"` (plain math on CPU, fused SDPA on CUDA) and, for
  comparison, the fused SDPA kernel forced;
- Ray Train (`TorchTrainer`, V2) with 1 worker (all cores) and 2 workers (DDP, cores
  split), fp32 and bf16; steady-state rate from the workers' own timing, plus the fixed
  cost of `fit()`;
- model FLOPs per sample (torch's FlopCounterMode, forward + backward) and the model FLOP
  utilisation against this CPU's measured matmul rate (fp32 and bf16).

"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_random_dataset
from mtdiff.runtime import set_torch_threads
from mtdiff.train.core import build_setup, diffusion_step_loss, to_torch
from mtdiff.train.learner import build_learner

COMPILE_ROWS = (  # name, preset, overrides, dataset (tasks, obs, act), timed steps per block
    ("MTDiff-P local, batch 8x10", "local", [], (10, 39, 4), 6),
    ("MTDiff-P local, batch 32x2", "local", ["data.batch_per_task=32"], (2, 17, 6), 6),
    ("Prompt-DT local, batch 8x10", "local", ["model.kind=promptdt"], (10, 39, 4), 6),
    ("MTDiff-P paper, batch 8x50", "paper", ["data.history=2"], (50, 39, 4), 2),
)


def compile_rows(tmp: str, threads: int, blocks: int, skip_paper: bool) -> list[dict]:
    """Eager and compiled samples/s of each `COMPILE_ROWS` entry (module docstring)."""
    set_torch_threads(threads)
    rows = []
    for name, preset, over, (tasks, obs, act), n in COMPILE_ROWS:
        if skip_paper and preset == "paper":
            continue
        data = os.path.join(tmp, f"data-{tasks}-{obs}-{act}")
        if not os.path.exists(data):
            write_random_dataset(data, tasks=tasks, episodes=4, episode_len=200,
                                 obs_dim=obs, act_dim=act)
        learners, batches, compile_s = {}, None, 0.0
        for mode in ("off", "inductor"):
            cfg = apply_overrides(get_preset(preset), [*over, f"train.compile={mode}"])
            torch.manual_seed(0)
            setup = build_setup(cfg, data)
            learners[mode] = build_learner(cfg, setup, torch.device("cpu"))
            if batches is None:
                batches = [to_torch(setup.sampler.sample(), torch.device("cpu"))
                           for _ in range(4)]
            t0 = time.perf_counter()
            for b in batches[:2]:  # compiles (inductor) and warms up
                float(learners[mode].update(b)["loss"])
            if mode == "inductor":
                compile_s = time.perf_counter() - t0
        batch = len(batches[0][next(iter(batches[0]))])
        times: dict[str, list[float]] = {"off": [], "inductor": []}
        for _ in range(blocks):
            for mode in ("off", "inductor"):
                t0 = time.perf_counter()
                for i in range(n):
                    float(learners[mode].update(batches[i % 4])["loss"])
                times[mode].append((time.perf_counter() - t0) / n)
        eager, comp = sorted(times["off"])[blocks // 2], sorted(times["inductor"])[blocks // 2]
        row = {"name": name, "batch": batch, "threads": threads,
               "eager_samples_per_s": round(batch / eager, 1),
               "compiled_samples_per_s": round(batch / comp, 1),
               "speedup": round(eager / comp, 3), "compile_s": round(compile_s, 1)}
        print(f"{name:<30}{row['eager_samples_per_s']:>10.1f}{row['compiled_samples_per_s']:>10.1f}"
              f"{row['speedup']:>9.2f}x{row['compile_s']:>9.1f}", flush=True)
        rows.append(row)
    return rows


def paper_cfg(bf16: bool, steps: int, workers: int = 1):
    """The paper's model/batch with a short run."""
    return apply_overrides(get_preset("paper"), [
        f"train.bf16={bf16}", f"train.steps={steps}", "train.log_every=2",
        f"train.checkpoint_every={10**6}", f"train.num_workers={workers}", "data.history=2",
        "model.dropout=0.0"])


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """Measured FLOP/s of an n x n matmul in `dtype` with the current threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def plain_loop(data: str, bf16: bool, steps: int, attn: str) -> tuple[float, float]:
    """(samples/s after one warm-up step, FLOPs per sample) of a single-process loop."""
    cfg = paper_cfg(bf16, steps)
    setup = build_setup(cfg, data)
    if attn != "auto":
        for m in setup.model.modules():
            if hasattr(m, "attn_impl"):
                m.attn_impl = attn
    opt = torch.optim.Adam(setup.model.parameters(), lr=cfg.train.lr)
    dev = torch.device("cpu")

    def step() -> None:
        batch = to_torch(setup.sampler.sample(), dev)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion_step_loss(setup.model, setup.schedule, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(setup.model.parameters(), 1.0)
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops() / setup.sampler.batch_size
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        step()
    rate = (steps - 1) * setup.sampler.batch_size / (time.perf_counter() - t0)
    return rate, flops


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
    """Run the eager / compiled rows (and the optional tables); JSON last."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the compiled rows")
    p.add_argument("--blocks", type=int, default=5,
                   help="alternating eager / compiled timing blocks (median taken)")
    p.add_argument("--skip-paper", action="store_true", help="no paper-sized compiled row")
    p.add_argument("--precision", action="store_true",
                   help="also: the paper config's plain loop, fp32 vs bf16, attention paths")
    p.add_argument("--ray", action="store_true", help="also: Ray Train 1 and 2 workers")
    p.add_argument("--steps", type=int, default=6, help="steps of the --precision / --ray runs")
    p.add_argument("--tasks", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'eager vs compiled':<30}{'eager/s':>10}{'comp/s':>10}{'ratio':>10}"
              f"{'compile s':>9}  (samples/s, {args.threads} thread(s))")
        rows = compile_rows(tmp, args.threads, args.blocks, args.skip_paper)
        if args.precision or args.ray:
            precision_tables(tmp, args)
    local = next(r for r in rows if r["name"].startswith("MTDiff-P local, batch 8x10"))
    print(json.dumps({"compiled_speedup": local["speedup"], "rows": rows}))


def precision_tables(tmp: str, args: argparse.Namespace) -> None:
    """The paper config: plain loop fp32 / bf16 / attention paths and Ray Train."""
    threads = os.cpu_count() or 2
    set_torch_threads(threads)  # as the Ray Train workers set it (denormals flushed)
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"CPU matmul rate ({threads} threads): fp32 {peak32 / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak16 / 1e9:.0f} GFLOP/s")
    rows = []
    data = os.path.join(tmp, "data-paper")
    write_random_dataset(data, tasks=args.tasks, episodes=10, episode_len=500, obs_dim=39,
                         act_dim=4)
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
