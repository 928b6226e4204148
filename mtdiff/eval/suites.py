"""Evaluation jobs per suite: one Ray task per (task or map, seed), a batch of envs in each.

Meta-World (MT50-rand, paper Table 1/6): N episodes of a task on random goals, success =
`info["success"]` at any of the 500 steps. Maze2D (Fig. 4): N episodes from random start
cells to the map's goal G; success = reaching G within the step budget. Cheetah-vel and
Ant-dir (App. H, Table 5): N full 200-step episodes of a task; the score is the return
(success is undefined there: None in the results).

Prompts: the task's (map's) prompt set stored with the training data; a map that has
none (a map file given on the command line) gets one cut from fresh expert
demonstrations, which is what "a few demonstrations of the new task" means (§3.2).
`prompt_task` can point a map at another map's prompts (the wrong-prompt control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtdiff.config import Config
from mtdiff.data.prompts import cut_prompt_windows
from mtdiff.eval.policy import load_policy
from mtdiff.runtime import set_torch_threads

# Suites scored by return alone: their environments define no success.
SUCCESS_UNDEFINED = ("cheetah-vel", "ant-dir")


@dataclass
class EvalJob:
    """One batch of episodes: a task (or map), a seed, and where its prompts come from."""

    suite: str
    task: str  # Meta-World task name, or Maze2D map name / file path
    seed: int
    episodes: int
    max_steps: int
    prompt_task: str | None = None  # None: the task's own prompt set
    keep_paths: bool = False
    # End an episode at its first success. Maze2D jobs keep True (reaching G is the score);
    # Meta-World jobs take EvalConfig.stop_on_success.
    stop_on_success: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _maze_prompts(policy: Any, maze: Any, cfg: Any, seed: int) -> np.ndarray:
    """A prompt set for a map the dataset has none for: its layout (a layout checkpoint),
    else windows of fresh expert episodes."""
    # (pulls in gymnasium, mujoco: imported on use; tests monkeypatch expert_episode here)
    from mtdiff.envs.maze2d_expert import expert_episode

    if policy.prompt_kind == "layout":
        return policy.layout_prompt(maze)
    demos = [expert_episode(maze, seed=seed + 17 + i, max_steps=cfg.maze2d.eval_episode_steps)
             for i in range(cfg.collect.prompt_episodes)]
    return cut_prompt_windows(demos, policy.prompt_len, cfg.collect.prompts_per_task,
                              np.random.default_rng(seed), window=cfg.collect.prompt_window)


def run_job(job: EvalJob, checkpoint: str, diffusion: Any, target_return: float | None,
            device: str | None = None, *, cfg: Config) -> dict[str, Any]:
    """Evaluate one batch (runs inside a Ray task); returns plain per-episode results.

    Any planner method's checkpoint (`mtdiff.eval.policy.load_policy`). target_return:
    R_max on the checkpoint's return scale; None = its natural target. cfg: the
    evaluation's resolved config (the stage passes it, overrides included), which cuts the
    prompts of a map the dataset has none for.
    """
    set_torch_threads(1)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=dev).manual_seed(job.seed)
    policy = load_policy(checkpoint, device=dev, diffusion=diffusion,
                         target_return=target_return, generator=gen)
    envs, name = make_envs(job)
    return run_policy_job(job, policy, cfg, envs, name, diffusion=diffusion)


def make_envs(job: EvalJob) -> tuple[list[Any], str]:
    """The job's environments (one per episode) and its task's (map's) name."""
    if job.suite == "maze2d":
        # (pulls in gymnasium, mujoco: imported on use)
        from mtdiff.envs.maze2d import load_map, make_env

        maze = load_map(job.task)
        return [make_env(maze, max_episode_steps=job.max_steps)
                for _ in range(job.episodes)], maze.name
    if job.suite == "metaworld":
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.metaworld import make_env
    else:  # Cheetah-vel, Ant-dir
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.mujoco_tasks import make_env
    return [make_env(job.task, seed=job.seed * 100_003 + i, max_episode_steps=job.max_steps)
            for i in range(job.episodes)], job.task


def run_policy_job(job: EvalJob, policy: Any, cfg: Any, envs: list[Any], name: str, *,
                   diffusion: Any = None) -> dict[str, Any]:
    """`policy`'s episodes of one job in `envs` (`make_envs`), closed at the end: the part
    every method and the reference policies (`mtdiff.eval.reference`) share, so the
    prompts drawn, the reset seeds and the step budget are the same for all of them."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.eval.rollout import rollout

    rng = np.random.default_rng(job.seed)
    src = job.prompt_task or name
    if job.suite == "maze2d" and src not in policy.prompts and policy.conditioning == "prompt":
        # (pulls in gymnasium, mujoco: imported on use)
        from mtdiff.envs.maze2d import load_map

        policy.prompts[src] = _maze_prompts(policy, load_map(src if src != name else job.task),
                                            cfg, job.seed)
    prompts = task_ids = None
    if policy.conditioning == "task_id":
        task_ids = np.full(job.episodes, policy.task_index(src))
    else:
        prompts = policy.sample_prompts(src, job.episodes, rng)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=job.episodes)]
    planner = getattr(policy, "planner", None)  # compiled engines persist per process
    compiled_before = planner.compile_seconds if planner is not None else 0.0
    res = rollout(policy, envs, max_steps=job.max_steps, prompts=prompts, task_ids=task_ids,
                  env_tasks=[src] * job.episodes, seeds=seeds, stop_on_success=job.stop_on_success,
                  keep_paths=job.keep_paths)
    for e in envs:
        e.close()
    scored = job.suite not in SUCCESS_UNDEFINED  # Cheetah-vel, Ant-dir: return only
    return {
        "task": name, "seed": job.seed, "prompt_task": src, "episodes": job.episodes,
        "success": res.success.tolist() if scored else None, "returns": res.returns.tolist(),
        "lengths": res.lengths.tolist(),
        "first_success": res.first_success.tolist() if scored else None,
        "env_steps": res.env_steps, "plan_seconds": res.plan_seconds, "seconds": res.seconds,
        "compile_seconds": (planner.compile_seconds - compiled_before) if planner else 0.0,
        **({"planner": planner.describe(diffusion)} if planner is not None else {}),
        "paths": [p[:, :2].tolist() for p in res.paths] if job.keep_paths else [],
        **job.extra,
    }


def summarize(results: list[dict[str, Any]], key: str = "task") -> dict[str, Any]:
    """Per task: success and return (mean over episodes, then mean ± std over seeds);
    overall: the mean over tasks per seed, then mean ± std over seeds (Table 1's shape),
    for success and for return (Table 5's score). Success is None where the suite
    defines none (results with ``success`` None: Cheetah-vel, Ant-dir)."""
    by_task: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by_task.setdefault(r[key], {})[r["seed"]] = {
            "success": np.nan if r["success"] is None else float(np.mean(r["success"])),
            "return": float(np.mean(r["returns"]))}

    def _or_none(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    tasks = {}
    for t, seeds in by_task.items():
        s = np.array([v["success"] for v in seeds.values()])
        ret = np.array([v["return"] for v in seeds.values()])
        tasks[t] = {"success_mean": _or_none(s.mean()), "success_std": _or_none(s.std()),
                    "return_mean": float(ret.mean()), "return_std": float(ret.std())}
    seed_ids = sorted({r["seed"] for r in results})
    per_seed = {k: [np.mean([by_task[t][sd][k] for t in by_task if sd in by_task[t]])
                    for sd in seed_ids] for k in ("success", "return")}
    steps = sum(r["env_steps"] for r in results)
    secs = sum(r["seconds"] for r in results)
    return {"tasks": tasks, "success_mean": _or_none(np.mean(per_seed["success"])),
            "success_std": _or_none(np.std(per_seed["success"])),
            "return_mean": float(np.mean(per_seed["return"])),
            "return_std": float(np.std(per_seed["return"])), "seeds": seed_ids,
            "env_steps": steps, "env_steps_per_s_per_job": steps / max(secs, 1e-9),
            "plan_seconds": sum(r["plan_seconds"] for r in results),
            "compile_seconds": sum(r.get("compile_seconds", 0.0) for r in results)}
