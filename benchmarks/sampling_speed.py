"""Sampling cost: time per plan (MTDiff-P, guided) and synthesis throughput (MTDiff-S).

Paper-sized models (d=256, 6 layers, 4 heads, H=32, J=20, L=2, obs 39, act 4), weights
as initialised (the cost of a denoising step does not depend on the weights). For each
sampler and step count: 200-step DDPM (the paper's; 1.9 s per plan on a desktop GPU,
App. F) against DDIM and DPM-Solver++ at 10/20/50 steps, reported as a ratio.

    python benchmarks/sampling_speed.py [--envs 1 50] [--synth-batch 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from mtdiff import keys
from mtdiff.config import DiffusionConfig, ModelConfig
from mtdiff.diffusion import DiffusionSchedule, guided_model_fn, make_sampler, sample
from mtdiff.models import build_model

OBS, ACT, H, J, L = 39, 4, 32, 20, 2
SETTINGS = [("ddpm", 200), ("ddim", 50), ("ddim", 20), ("ddim", 10), ("dpmsolver", 20),
            ("dpmsolver", 10)]


def timed(fn, reps: int) -> float:
    """Median seconds of `reps` calls (after one warm-up)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def main() -> None:
    """Print time per plan and synthesis throughput for every sampler setting."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 50])
    p.add_argument("--synth-batch", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    dev = torch.device(args.device)
    sched = DiffusionSchedule.vp(200).to(dev)
    planner = build_model(ModelConfig(kind="mtdiff-p", dropout=0.0), obs_dim=OBS, act_dim=ACT,
                          horizon=H, history=L, prompt_len=J, num_tasks=50).to(dev).eval()
    synth = build_model(ModelConfig(kind="mtdiff-s", dropout=0.0), obs_dim=OBS, act_dim=ACT,
                        horizon=H, history=L, prompt_len=J, num_tasks=50).to(dev).eval()
    print(f"device {dev}, threads {torch.get_num_threads()}; paper-sized models, K=200")
    print("\nMTDiff-P: one plan (guidance alpha=1.2: cond + uncond in one batch of 2N)")
    print(f"{'sampler':<18}" + "".join(f"{f'{n} env(s) s/plan':>20}{'vs DDPM':>9}"
                                      for n in args.envs))
    base: dict[int, float] = {}
    for name, steps in SETTINGS:
        line = f"{name + '-' + str(steps):<18}"
        for n in args.envs:
            cond = {keys.BATCH_PROMPT: torch.randn(n, J, OBS + ACT, device=dev),
                    keys.BATCH_HISTORY: torch.randn(n, L, OBS, device=dev),
                    keys.BATCH_RETURN: torch.ones(n, 1, device=dev)}
            s = make_sampler(DiffusionConfig(sampler=name, sample_steps=steps), sched)
            fn = guided_model_fn(planner, cond, 1.2)
            t = timed(lambda fn=fn, s=s, n=n: sample(fn, (n, H, ACT), s, device=dev),
                      1 if steps == 200 else args.reps)
            base.setdefault(n, t)
            line += f"{t:>20.3f}{base[n] / t:>8.1f}x"
        print(line)
    print(f"\nMTDiff-S synthesis: {args.synth_batch} sequences x H={H} per batch, temperature 1")
    print(f"{'sampler':<18}{'s/batch':>10}{'transitions/s':>15}{'vs DDPM':>9}")
    z = torch.randn(args.synth_batch, J, OBS + ACT, device=dev)
    sbase = None
    for name, steps in SETTINGS:
        s = make_sampler(DiffusionConfig(sampler=name, sample_steps=steps), sched,
                         temperature=1.0)
        t = timed(lambda s=s: sample(lambda x, k: synth(x, k, {keys.BATCH_PROMPT: z}),
                                     (args.synth_batch, H, OBS + ACT + 1), s, device=dev),
                  1 if steps == 200 else args.reps)
        sbase = sbase or t
        print(f"{name + '-' + str(steps):<18}{t:>10.2f}{args.synth_batch * H / t:>15.0f}"
              f"{sbase / t:>8.1f}x")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak resident memory of this process: {peak:.0f} MiB"
          + (f"; CUDA peak {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB"
             if dev.type == "cuda" else ""))


if __name__ == "__main__":
    with torch.no_grad():
        main()
