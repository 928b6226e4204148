"""SAC collection throughput: env steps/s including learning, `lean` vs `rllib`, and
`lean`'s scaling from 1 to 2 parallel tasks.

Every measurement runs in a Ray task with 1 CPU and 1 torch thread (as the collection
does), on Meta-World reach-v3, with the paper's agent: 256x256 networks, batch 256, one
update per env step after a warm-up of random steps (not timed).

- lean: `SACAgent` + `ReplayBuffer` stepped like `collect_task_lean` does.
- rllib: RLlib's SAC (new API stack, `num_env_runners=0`, built by
  `mtdiff.collect.sac_rllib.build_algo`), timed over whole `algo.train()` iterations.
- scaling: 2 lean Ray tasks at once; aggregate steps/s over one task's.
- lean with denormal floats kept (torch's default): what flushing them buys.

Both wall-clock steps/s and steps per CPU-second of the task's process are printed: on
a machine shared with other work the second is the per-core cost. Targets: lean >= 100
steps/s per core; 2 tasks on 2 free cores >= 1.8x one task.

    python benchmarks/sac_collect.py [--steps 2000] [--rllib-steps 400] [--warmup 1000]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

TASK = "reach-v3"


def lean_steps_per_s(steps: int, warmup: int, seed: int = 0,
                     flush_denormals: bool = True) -> dict[str, float]:
    """Time `steps` env steps of the lean agent, each followed by one update.

    `flush_denormals=False` is the baseline before the collection flushed them."""
    import numpy as np
    import torch

    from mtdiff.collect.sac import ReplayBuffer, SACAgent, SACHyper
    from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM, make_env
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)  # as the collection sets it (1 thread, denormals flushed)
    torch.set_flush_denormal(flush_denormals)
    agent = SACAgent(OBS_DIM, ACT_DIM, SACHyper(), seed=seed)
    buffer = ReplayBuffer(warmup + steps, OBS_DIM, ACT_DIM, 256, agent.device)
    env = make_env(TASK, seed=seed)
    obs, _ = env.reset()
    rec = np.empty((500, OBS_DIM), np.float32)  # what the collection records per step
    for i in range(warmup + steps):
        if i == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        action = agent.random_action() if i < warmup else agent.act(obs)
        next_obs, reward, term, trunc, _ = env.step(action)
        rec[i % 500] = obs
        buffer.add(obs, action, float(reward), next_obs, term)
        if i >= warmup:
            agent.update(buffer)
        obs = env.reset()[0] if term or trunc else next_obs
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"steps": steps, "wall_s": wall, "cpu_s": cpu, "steps_per_s": steps / wall,
            "steps_per_cpu_s": steps / cpu, "pid": os.getpid()}


def rllib_steps_per_s(steps: int, warmup: int, seed: int = 0) -> dict[str, float]:
    """Time RLlib's SAC over `algo.train()` iterations of `steps` env steps."""
    from ray.tune.registry import register_env

    from mtdiff.collect.sac_rllib import build_algo
    from mtdiff.config import apply_overrides, get_preset
    from mtdiff.envs.metaworld import make_env
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)  # as the collection sets it (1 thread, denormals flushed)
    cfg = apply_overrides(get_preset("paper"), [f"metaworld.episode_steps={steps}",
                                                f"metaworld.transitions_per_task={10 * steps}"])
    register_env("mtdiff-bench", lambda _: make_env(TASK, seed=seed, max_episode_steps=500))
    algo = build_algo(TASK, cfg, seed, "mtdiff-bench", {}, learning_starts=warmup)
    while _sampled(algo.train()) < warmup + 1:  # warm-up, not timed
        pass
    before = _sampled(algo.train())  # one learning iteration to settle, then time one
    t0, c0 = time.perf_counter(), time.process_time()
    done = _sampled(algo.train()) - before
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    algo.stop()
    return {"steps": done, "wall_s": wall, "cpu_s": cpu, "steps_per_s": done / wall,
            "steps_per_cpu_s": done / cpu, "pid": os.getpid()}


def _sampled(result: dict[str, Any]) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def main() -> None:
    """Run the three measurements in one Ray session and print them side by side."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="timed lean steps per task")
    p.add_argument("--rllib-steps", type=int, default=400, help="timed RLlib steps")
    p.add_argument("--warmup", type=int, default=1000, help="random steps before timing")
    p.add_argument("--skip-rllib", action="store_true")
    args = p.parse_args()

    import ray

    from mtdiff.runtime import init_ray

    init_ray()
    print(f"Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    lean = ray.remote(num_cpus=1)(lean_steps_per_s)
    one = ray.get(lean.remote(args.steps, args.warmup))
    kept = ray.get(lean.remote(args.steps, args.warmup, flush_denormals=False))
    t0 = time.perf_counter()
    two = ray.get([lean.remote(args.steps, args.warmup, seed=s) for s in (1, 2)])
    both_s = time.perf_counter() - t0
    # Aggregate: both tasks' timed steps over the span in which both were timed.
    span = max(r["wall_s"] for r in two)
    agg = sum(r["steps"] for r in two) / span
    rows = [("lean, 1 task", one), ("lean, denormals kept", kept)]
    if not args.skip_rllib:
        rl = ray.get(ray.remote(num_cpus=1)(rllib_steps_per_s).remote(args.rllib_steps,
                                                                        args.warmup))
        rows.append(("rllib, 1 task", rl))
    rows += [(f"lean, 2 tasks (task {i})", r) for i, r in enumerate(two)]
    print(f"\nenv steps/s including learning (1 update/step, batch 256, 256x256 nets), "
          f"{TASK}, 1 thread per task:")
    print(f"{'':26s} {'steps':>6s} {'wall s':>7s} {'steps/s':>8s} {'steps/CPU-s':>12s}")
    for name, r in rows:
        print(f"{name:26s} {r['steps']:6d} {r['wall_s']:7.1f} {r['steps_per_s']:8.1f} "
              f"{r['steps_per_cpu_s']:12.1f}")
    if not args.skip_rllib:
        print(f"\nlean / rllib: {one['steps_per_s'] / rl['steps_per_s']:.1f}x "
              f"(wall), {one['steps_per_cpu_s'] / rl['steps_per_cpu_s']:.1f}x (CPU)")
    print(f"denormals flushed / kept: {one['steps_per_cpu_s'] / kept['steps_per_cpu_s']:.2f}x "
          "(steps/CPU-s)")
    print(f"scaling 1 -> 2 tasks: {agg:.1f} vs {one['steps_per_s']:.1f} steps/s = "
          f"{agg / one['steps_per_s']:.2f}x (target >= 1.8x; {both_s:.0f}s for both)")
    cpu_ratio = sum(r["steps_per_cpu_s"] for r in two) / one["steps_per_cpu_s"]
    print(f"per-core cost side by side: {cpu_ratio:.2f}x one task's steps/CPU-s (2.00 = the "
          "two tasks do not slow each other; wall-clock scaling needs 2 free cores)")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine lowers "
          "wall-clock numbers; steps/CPU-s is the per-core cost)")


if __name__ == "__main__":
    main()
