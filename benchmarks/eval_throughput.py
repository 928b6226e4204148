"""Planning evaluation throughput: batched environments against one environment per plan.

Real Meta-World v3 environments (MT10 by default), the real `Planner` and `rollout`, a
local-preset-sized MTDiff-P (random weights unless `--checkpoint` names a trained one:
the cost of a denoising step does not depend on the weights). Every episode runs the
full `--max-steps` (no early stop), so all modes do the same work per environment step.

Modes, each reporting environment steps/s *including planning*, seconds per plan call,
and the process's peak memory:
  all-batched   one rollout over tasks x episodes environments: one denoising call per
                step for all of them (a GPU worker's shape);
  per-task      one rollout per task with its `episodes` environments (what an evaluation
                Ray job does on a CPU worker);
  unbatched     one environment per plan call (the authors' evaluation loop), measured on
                the first task's first episodes and reported per environment step.

    python benchmarks/eval_throughput.py [--tasks MT10] [--episodes 10] [--max-steps 30]
        [--checkpoint CKPT] [--steps 20] [--threads 1] [--student-steps 1 2 4]

With --student-steps the per-task mode also runs with distilled students (random weights,
n unguided calls per plan) and prints their env steps/s against the teacher's.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
import torch

from mtdiff import keys
from mtdiff.config import DiffusionConfig, get_preset
from mtdiff.data.normalize import Normalizer
from mtdiff.diffusion import DiffusionSchedule
from mtdiff.diffusion.distill import StudentSpec
from mtdiff.envs.metaworld import make_env, resolve_tasks
from mtdiff.eval.planner import Planner, load_planner
from mtdiff.eval.policy import PlannerPolicy
from mtdiff.eval.rollout import rollout
from mtdiff.models import build_model
from mtdiff.train.core import LoadedModel

OBS, ACT = 39, 4


def random_planner(tasks: list[str], student_steps: int = 0) -> Planner:
    """A local-preset-sized MTDiff-P with random weights, unit normaliser, random prompts;
    with `student_steps` it plans as a distilled student of that many steps would."""
    cfg = get_preset("local")
    build = {"obs_dim": OBS, "act_dim": ACT, "horizon": cfg.data.horizon,
             "history": cfg.data.history_for("metaworld"), "prompt_len": cfg.data.prompt_len,
             "num_tasks": len(tasks)}
    model = build_model(cfg.model, **build).eval().requires_grad_(False)
    unit = {k: {"mean": np.zeros(d), "std": np.ones(d), "min": -np.ones(d), "max": np.ones(d)}
            for k, d in ((keys.OBSERVATION, OBS), (keys.ACTION, ACT), (keys.REWARD, 1))}
    meta = {"kind": "mtdiff-p", "build": build, "tasks": tasks, "prompts": ""}
    if student_steps:
        meta["student"] = StudentSpec(steps=student_steps, teacher_steps=20,
                                      guidance=cfg.diffusion.guidance,
                                      temperature=cfg.diffusion.temperature).to_meta()
    loaded = LoadedModel(model, Normalizer(unit), DiffusionSchedule.from_config(cfg.diffusion),
                         cfg, meta, 0)
    rng = np.random.default_rng(0)
    prompts = {t: rng.normal(size=(4, build["prompt_len"], OBS + ACT)).astype(np.float32)
               for t in tasks}
    return Planner(loaded, prompts=prompts)


def run_mode(planner: Planner, groups: list[list[str]], episodes: int, max_steps: int,
             dcfg: DiffusionConfig, cpu: list[float] | None = None) -> tuple[int, float, int]:
    """Roll out each group of tasks as one batch; returns (env steps, seconds, plan calls).

    Seconds are the rollouts' own (after the environments are built and reset); `cpu`, if
    given, gets this process's CPU seconds over the same rollouts appended.
    """
    import time

    steps = calls = 0
    seconds = cpu_s = 0.0
    rng = np.random.default_rng(0)
    for group in groups:
        envs, prompts = [], []
        for t in group:
            envs += [make_env(t, seed=1000 + i, max_episode_steps=max_steps)
                     for i in range(episodes)]
            prompts.append(planner.sample_prompts(t, episodes, rng))
        c0 = time.process_time()
        res = rollout(PlannerPolicy(planner, diffusion=dcfg), envs, max_steps=max_steps,
                      prompts=np.concatenate(prompts), seeds=list(range(len(envs))),
                      stop_on_success=False)
        cpu_s += time.process_time() - c0
        for e in envs:
            e.close()
        steps += res.env_steps
        seconds += res.seconds
        calls += max_steps
    if cpu is not None:
        cpu.append(cpu_s)
    return steps, seconds, calls


def compare_students(tasks: list[str], args: argparse.Namespace, dcfg: DiffusionConfig) -> None:
    """Per-task mode: the teacher and each student back to back; env steps per wall second
    and per CPU second of this (one-thread) process, which a shared machine's load moves
    far less than wall time."""
    print(f"\nper-task mode ({args.episodes} envs/plan): teacher {args.sampler}-{args.steps} "
          "with guidance vs distilled students (one unguided call per step)")
    print(f"{'planner':<24}{'env steps/s':>12}{'vs teacher':>11}{'per CPU s':>11}"
          f"{'vs teacher':>11}")
    base = None
    for k in [0, *args.student_steps]:
        planner, cpu_s = random_planner(tasks, k), []
        steps, sec, _ = run_mode(planner, [[t] for t in tasks], args.episodes, args.max_steps,
                                 dcfg, cpu_s)
        wall, cpu = steps / sec, steps / cpu_s[0]
        base = base or (wall, cpu)
        name = f"teacher {args.sampler}-{args.steps}" if k == 0 else f"student-{k}"
        print(f"{name:<24}{wall:>12.1f}{wall / base[0]:>10.1f}x{cpu:>11.1f}{cpu / base[1]:>10.1f}x")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Print the three modes side by side, with ratios against unbatched planning."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="MT10")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--unbatched-episodes", type=int, default=2)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--student-steps", type=int, nargs="*", default=[],
                   help="also run the per-task mode with a distilled student of these steps "
                        "(random weights) and print its rate against the teacher's")
    p.add_argument("--students-only", action="store_true",
                   help="with --student-steps: skip the three batching modes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = resolve_tasks(args.tasks)
    planner = load_planner(args.checkpoint) if args.checkpoint else random_planner(tasks)
    dcfg = DiffusionConfig(sampler=args.sampler, sample_steps=args.steps)
    n = len(tasks) * args.episodes
    print(f"{len(tasks)} tasks x {args.episodes} episodes x {args.max_steps} steps, "
          f"{args.sampler}-{args.steps} with guidance, {args.threads} thread(s), "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'}")
    run_mode(planner, [tasks[:1]], 1, 3, dcfg)  # warm-up
    if args.students_only and args.student_steps and not args.checkpoint:
        compare_students(tasks, args, dcfg)
        return
    rows = []
    base_mem = peak_rss_mib()
    # Unbatched: each environment planned alone (a batch of 1), several episodes in a row.
    s, sec, calls = 0, 0.0, 0
    for _ in range(args.unbatched_episodes):
        a, b, c = run_mode(planner, [tasks[:1]], 1, args.max_steps, dcfg)
        s, sec, calls = s + a, sec + b, calls + c
    rows.append(("unbatched (1 env/plan)", s, sec, calls, peak_rss_mib()))
    s, sec, calls = run_mode(planner, [[t] for t in tasks], args.episodes, args.max_steps, dcfg)
    rows.append((f"per-task ({args.episodes} envs/plan)", s, sec, calls, peak_rss_mib()))
    s, sec, calls = run_mode(planner, [tasks], args.episodes, args.max_steps, dcfg)
    rows.append((f"all-batched ({n} envs/plan)", s, sec, calls, peak_rss_mib()))
    print(f"\n{'mode':<28}{'env steps':>10}{'seconds':>9}{'env steps/s':>13}{'s/plan':>9}"
          f"{'vs unbatched':>14}{'peak RSS MiB':>14}")
    base = rows[0][1] / rows[0][2]
    for name, steps, sec, calls, mem in rows:
        rate = steps / sec
        print(f"{name:<28}{steps:>10}{sec:>9.1f}{rate:>13.1f}{sec / calls:>9.3f}"
              f"{rate / base:>13.1f}x{mem:>14.0f}")
    print(f"(peak RSS before the runs: {base_mem:.0f} MiB; it only grows, so each row is the "
          "peak up to that mode)")
    if args.student_steps and not args.checkpoint:
        compare_students(tasks, args, dcfg)
    print(f"\nA full evaluation at these rates: {len(tasks)} tasks x {args.episodes} episodes"
          " x 500 "
          f"steps = {len(tasks) * args.episodes * 500:,} env steps -> "
          f"{len(tasks) * args.episodes * 500 / (rows[1][1] / rows[1][2]) / 60:.0f} min on one "
          f"core per-task, {len(tasks) * args.episodes * 500 / (rows[2][1] / rows[2][2]) / 60:.0f}"
          " min all-batched (before early stops at success)")


if __name__ == "__main__":
    main()
