"""Evaluation jobs per suite: one Ray task per (task or map, seed), a batch of envs in each.

Meta-World (MT50-rand, paper Table 1/6): N episodes of a task on random goals, success =
`info["success"]` at any of the 500 steps. Maze2D (Fig. 4): N episodes from random start
cells to the map's goal G; success = reaching G within the step budget.

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


def _maze_prompts(planner: Any, maze: Any, cfg: Any, seed: int) -> np.ndarray:
    """A prompt set for a map the dataset has none for: its layout (a layout checkpoint),
    else windows of fresh expert episodes."""
    from mtdiff.data.prompts import cut_prompt_windows
    from mtdiff.envs.maze2d import expert_episode

    if planner.prompt_kind == "layout":
        return planner.layout_prompt(maze)
    demos = [expert_episode(maze, seed=seed + 17 + i, max_steps=cfg.maze2d.eval_episode_steps)
             for i in range(cfg.collect.prompt_episodes)]
    return cut_prompt_windows(demos, planner.build["prompt_len"], cfg.collect.prompts_per_task,
                              np.random.default_rng(seed), window=cfg.collect.prompt_window)


def run_job(job: EvalJob, checkpoint: str, diffusion: Any, target_return: float | None,
            device: str | None = None) -> dict[str, Any]:
    """Evaluate one batch (runs inside a Ray task); returns plain per-episode results.

    target_return: R_max on the checkpoint's return scale; None = its natural target."""
    from mtdiff.eval.planner import load_planner
    from mtdiff.eval.rollout import rollout
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    planner = load_planner(checkpoint, device=dev)
    cfg = planner.m.cfg
    rng = np.random.default_rng(job.seed)
    gen = torch.Generator(device=dev).manual_seed(job.seed)
    if job.suite == "maze2d":
        from mtdiff.envs.maze2d import load_map, make_env

        maze = load_map(job.task)
        name = maze.name
        envs = [make_env(maze, max_episode_steps=job.max_steps) for _ in range(job.episodes)]
        src = job.prompt_task or name
        if src not in planner.prompts:
            planner.prompts[src] = _maze_prompts(planner, load_map(src) if src != name else maze,
                                                 cfg, job.seed)
    else:
        from mtdiff.envs.metaworld import make_env

        name = job.task
        envs = [make_env(job.task, seed=job.seed * 100_003 + i, max_episode_steps=job.max_steps)
                for i in range(job.episodes)]
        src = job.prompt_task or name
    kind = planner.m.meta["kind"]
    prompts = task_ids = None
    if kind == "mtdiff-p-onehot":
        if src not in planner.tasks:
            raise ValueError(f"the one-hot planner only knows its training tasks; {src!r} is "
                             "not one of them (that is the point of prompts)")
        task_ids = np.full(job.episodes, planner.tasks.index(src))
    else:
        prompts = planner.sample_prompts(src, job.episodes, rng)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=job.episodes)]
    res = rollout(planner, envs, max_steps=job.max_steps, prompts=prompts, task_ids=task_ids,
                  diffusion=diffusion, target_return=target_return, seeds=seeds,
                  stop_on_success=job.stop_on_success,
                  keep_paths=job.keep_paths, generator=gen)
    for e in envs:
        e.close()
    return {
        "task": name, "seed": job.seed, "prompt_task": src, "episodes": job.episodes,
        "success": res.success.tolist(), "returns": res.returns.tolist(),
        "lengths": res.lengths.tolist(), "first_success": res.first_success.tolist(),
        "env_steps": res.env_steps, "plan_seconds": res.plan_seconds, "seconds": res.seconds,
        "paths": [p[:, :2].tolist() for p in res.paths] if job.keep_paths else [],
        **job.extra,
    }


def summarize(results: list[dict[str, Any]], key: str = "task") -> dict[str, Any]:
    """Per task: success and return (mean over episodes, then mean ± std over seeds);
    overall: the mean over tasks per seed, then mean ± std over seeds (Table 1's shape)."""
    by_task: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by_task.setdefault(r[key], {})[r["seed"]] = {
            "success": float(np.mean(r["success"])), "return": float(np.mean(r["returns"]))}
    tasks = {}
    for t, seeds in by_task.items():
        s = np.array([v["success"] for v in seeds.values()])
        ret = np.array([v["return"] for v in seeds.values()])
        tasks[t] = {"success_mean": float(s.mean()), "success_std": float(s.std()),
                    "return_mean": float(ret.mean()), "return_std": float(ret.std())}
    seed_ids = sorted({r["seed"] for r in results})
    per_seed = [np.mean([by_task[t][sd]["success"] for t in by_task if sd in by_task[t]])
                for sd in seed_ids]
    steps = sum(r["env_steps"] for r in results)
    secs = sum(r["seconds"] for r in results)
    return {"tasks": tasks, "success_mean": float(np.mean(per_seed)),
            "success_std": float(np.std(per_seed)), "seeds": seed_ids,
            "env_steps": steps, "env_steps_per_s_per_job": steps / max(secs, 1e-9),
            "plan_seconds": sum(r["plan_seconds"] for r in results)}
