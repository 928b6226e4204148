"""Batched planner rollouts: N environments stepped together, one denoising call per step.

Alg. 1 (evaluation): keep the last L states, condition on a prompt window of the task,
denoise an action sequence toward R_max with guidance α and temperature β, execute its
first action, replan at every step. Here all N environments of a batch plan in one call
(`Planner.plan`); an environment that finished keeps its slot idle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from mtdiff.config import DiffusionConfig
from mtdiff.eval.planner import Planner


@dataclass
class RolloutResult:
    """Per-episode outcomes of one batch, (N,) each, plus optional xy paths."""

    success: np.ndarray  # bool: info["success"] at any step
    returns: np.ndarray  # float: sum of rewards
    lengths: np.ndarray  # int: steps taken
    first_success: np.ndarray  # int: step of the first success, -1 if none
    paths: list[np.ndarray] = field(default_factory=list)  # (T_i, obs_dim) per episode
    env_steps: int = 0
    plan_seconds: float = 0.0
    seconds: float = 0.0


def rollout(planner: Planner, envs: list[gym.Env], *, max_steps: int,
            prompts: np.ndarray | None = None, task_ids: np.ndarray | None = None,
            diffusion: DiffusionConfig | None = None, target_return: float | None = None,
            reset_options: list[dict] | None = None, seeds: list[int] | None = None,
            stop_on_success: bool = False, keep_paths: bool = False,
            generator: torch.Generator | None = None,
            on_step: Callable[[int], None] | None = None) -> RolloutResult:
    """Run one episode in each of `envs` with the planner, all planned together.

    prompts: (N, J, obs+act) raw prompt windows, one per environment (MTDiff-P); or
    task_ids (N,) for the one-hot variant. History before the first step repeats the
    initial state (as in training's padding). target_return: None = the checkpoint's
    natural target (`Planner.plan`).
    """
    import time

    N = len(envs)
    L = planner.history
    obs = np.stack([env.reset(seed=None if seeds is None else seeds[i],
                              options=None if reset_options is None else reset_options[i])[0]
                    for i, env in enumerate(envs)]).astype(np.float32)  # (N, obs_dim)
    hist = np.repeat(obs[:, None], L, axis=1)  # (N, L, obs_dim)
    active = np.ones(N, bool)
    res = RolloutResult(np.zeros(N, bool), np.zeros(N), np.zeros(N, int), np.full(N, -1))
    paths = [[o] for o in obs] if keep_paths else []
    t_start = time.perf_counter()
    for t in range(max_steps):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        t0 = time.perf_counter()
        plan = planner.plan(hist[idx], prompt=None if prompts is None else prompts[idx],
                            task_ids=None if task_ids is None else task_ids[idx],
                            target_return=target_return, diffusion=diffusion,
                            generator=generator)  # (n, H, act_dim)
        res.plan_seconds += time.perf_counter() - t0
        for j, i in enumerate(idx):
            o, r, term, trunc, info = envs[i].step(plan[j, 0])
            res.returns[i] += float(r)
            res.lengths[i] += 1
            res.env_steps += 1
            if info.get("success") and not res.success[i]:
                res.success[i] = True
                res.first_success[i] = t
            hist[i] = np.concatenate([hist[i, 1:], np.asarray(o, np.float32)[None]], axis=0)
            if keep_paths:
                paths[i].append(np.asarray(o, np.float32))
            if term or trunc or (stop_on_success and res.success[i]):
                active[i] = False
        if on_step is not None:
            on_step(t)
    res.paths = [np.stack(p) for p in paths]
    res.seconds = time.perf_counter() - t_start
    return res
