"""Meta-World scripted experts: success rates, noise sensitivity, env speed and build cost.

Run on one core, one thread (the numbers below are per core):

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/metaworld_experts.py
    python benchmarks/metaworld_experts.py --tasks MT10 --episodes 2   # quick look

Prints, in order:
  1. env construction: `import metaworld`, the first env of a task (samples the 50 goals
     with `metaworld.MT1`, then cached) and every later env of that task;
  2. per-task success rate of the noise-free expert (episode counts as a success if
     `info["success"]` is ever true, Meta-World's convention) and the tasks below 100%;
  3. mean success over `--noise-tasks` for each `--noise` std;
  4. env steps/s on one core, env alone (random actions) and env + expert.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mtdiff.collect.scripted import rollout_scripted, scripted_policy
from mtdiff.envs.metaworld import goal_tasks, make_env, resolve_tasks


def success_rate(task: str, *, episodes: int, noise: float, seed: int, steps: int) -> float:
    """Fraction of episodes in which the (noisy) expert succeeds at least once."""
    eps = rollout_scripted(task, num_episodes=episodes, noise_std=noise, seed=seed,
                           max_episode_steps=steps)
    return float(np.mean([ep["success"].any() for ep in eps]))


def construction_times(tasks: list[str]) -> None:
    """Time the first (goal-sampling) and a later env build per task."""
    t0 = time.perf_counter()
    import metaworld  # noqa: F401  (timed: MuJoCo + all 50 env classes)

    print(f"import metaworld: {time.perf_counter() - t0:.2f} s")
    cold, warm = [], []
    for task in tasks:
        t0 = time.perf_counter()
        goal_tasks(task)
        make_env(task, seed=0).close()
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        make_env(task, seed=1).close()
        warm.append(time.perf_counter() - t0)
    print(f"make_env, first per task (MT1 goal sampling + model load): mean "
          f"{np.mean(cold):.3f} s, max {np.max(cold):.3f} s over {len(tasks)} tasks")
    print(f"make_env, later (goals cached, model load only): mean {np.mean(warm):.3f} s, "
          f"max {np.max(warm):.3f} s")


def steps_per_second(tasks: list[str], steps: int, seed: int) -> None:
    """Env-only and env+expert throughput, one episode per task, envs already built."""
    rng = np.random.default_rng(seed)
    n_env = n_exp = 0
    t_env = t_exp = 0.0
    for task in tasks:
        env = make_env(task, seed=seed, max_episode_steps=steps)
        env.reset()
        actions = rng.uniform(-1, 1, (steps, 4)).astype(np.float32)
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        t_env += time.perf_counter() - t0
        n_env += steps
        policy = scripted_policy(task)
        obs, _ = env.reset()
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, *_ = env.step(np.clip(policy.get_action(obs.astype(np.float64)), -1, 1))
        t_exp += time.perf_counter() - t0
        n_exp += steps
        env.close()
    print(f"env steps/s, random actions: {n_env / t_env:,.0f}; env + scripted expert: "
          f"{n_exp / t_exp:,.0f}  ({len(tasks)} tasks x {steps} steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="MT50", help="task spec for the noise-free table")
    parser.add_argument("--noise-tasks", default="MT10", help="task spec for the noise sweep")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.1, 0.3, 0.5])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = resolve_tasks(args.tasks)
    noise_tasks = resolve_tasks(args.noise_tasks)

    import warnings

    # Speed runs call the policies directly; their "Constant(s) may be too high" warnings
    # are by design (the env clips) and would flood the output.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")

    print("== env construction")
    construction_times(tasks)

    print(f"\n== scripted expert success, noise 0, {args.episodes} episodes x {args.steps} steps")
    rates = {}
    t0 = time.perf_counter()
    for task in tasks:
        rates[task] = success_rate(task, episodes=args.episodes, noise=0.0, seed=args.seed,
                                   steps=args.steps)
        print(f"{task:32s} {rates[task]:6.0%}")
    elapsed = time.perf_counter() - t0
    below = {t: r for t, r in rates.items() if r < 1.0}
    print(f"mean {np.mean(list(rates.values())):.1%} over {len(tasks)} tasks; "
          f"{len(tasks) - len(below)} at 100%; below 100%: "
          + (", ".join(f"{t} {r:.0%}" for t, r in below.items()) or "none"))
    total = len(tasks) * args.episodes * args.steps
    print(f"({total:,} steps in {elapsed:.1f} s = {total / elapsed:,.0f} steps/s, env builds "
          "included)")

    print(f"\n== noise sweep over {args.noise_tasks} ({len(noise_tasks)} tasks), "
          f"{args.episodes} episodes each")
    for noise in args.noise:
        per_task = [success_rate(t, episodes=args.episodes, noise=noise, seed=args.seed,
                                 steps=args.steps) for t in noise_tasks]
        worst = min(zip(per_task, noise_tasks, strict=True))
        print(f"noise {noise:.2f}: mean success {np.mean(per_task):.1%} "
              f"(lowest: {worst[1]} {worst[0]:.0%})")

    print("\n== throughput (one core)")
    steps_per_second(noise_tasks, args.steps, args.seed)


if __name__ == "__main__":
    main()
