"""Training samples/s for the paper's configuration: plain loop vs Ray Train, fp32 vs bf16.

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

    python benchmarks/train_throughput.py [--steps 6] [--skip-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_random_dataset
from mtdiff.runtime import set_torch_threads
from mtdiff.train.core import build_setup, diffusion_step_loss, to_torch


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
    """Run every configuration and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    threads = os.cpu_count() or 2
    set_torch_threads(threads)  # as the Ray Train workers set it (denormals flushed)
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"CPU matmul rate ({threads} threads): fp32 {peak32 / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak16 / 1e9:.0f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        write_random_dataset(data, tasks=args.tasks, episodes=10, episode_len=500, obs_dim=39,
                             act_dim=4)
        for bf16 in (False, True):
            for attn in ("auto", "sdpa"):
                rate, flops = plain_loop(data, bf16, args.steps, attn)
                rows.append((f"plain loop, {'bf16' if bf16 else 'fp32'}, attn={attn}", rate,
                             flops, bf16, None))
        if not args.skip_ray:
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
    if not args.skip_ray:
        for prec, plain in (("fp32", f32), ("bf16", b16)):
            r1 = base[f"Ray Train 1 worker(s), {prec}"]
            r2 = base[f"Ray Train 2 worker(s), {prec}"]
            print(f"Ray Train overhead at 1 worker, {prec}: {1 - r1 / plain:+.1%} of the plain "
                  f"loop's rate; 2 workers / 1 worker: {r2 / r1:.2f}x")


if __name__ == "__main__":
    main()
