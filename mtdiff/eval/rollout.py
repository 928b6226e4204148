"""Batched rollouts: N environments stepped together, one policy call per step for all.

Alg. 1 (evaluation) for MTDiff-P: keep the last L states, condition on a prompt window of
the task, denoise an action sequence toward R_max with guidance α and temperature β,
execute its first action, replan at every step (`mtdiff.eval.policy.PlannerPolicy`).
Here any method's `Policy` acts for all active environments in one call; an environment
that finished keeps its slot idle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from mtdiff.eval.policy import Policy


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


def rollout(policy: Policy, envs: list[gym.Env], *, max_steps: int,
            prompts: np.ndarray | None = None, task_ids: np.ndarray | None = None,
            env_tasks: list[str] | None = None, reset_options: list[dict] | None = None,
            seeds: list[int] | None = None,
            stop_on_success: bool = False, keep_paths: bool = False,
            on_step: Callable[[int], None] | None = None) -> RolloutResult:
    """Run one episode in each of `envs` with `policy`, all acting together.

    prompts: (N, J, obs+act) raw prompt windows, one per environment (prompt-conditioned
    policies); or task_ids (N,) for task-id-conditioned ones; env_tasks: each environment's
    task name (for policies with per-task constants, `mtdiff.eval.policy`).
    """
    import time

    N = len(envs)
    obs = np.stack([env.reset(seed=None if seeds is None else seeds[i],
                              options=None if reset_options is None else reset_options[i])[0]
                    for i, env in enumerate(envs)]).astype(np.float32)  # (N, obs_dim)
    policy.begin(obs, prompts=prompts, task_ids=task_ids, env_tasks=env_tasks)
    active = np.ones(N, bool)
    res = RolloutResult(np.zeros(N, bool), np.zeros(N), np.zeros(N, int), np.full(N, -1))
    paths = [[o] for o in obs] if keep_paths else []
    t_start = time.perf_counter()
    for t in range(max_steps):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        t0 = time.perf_counter()
        actions = policy.act(idx)  # (n, act_dim)
        res.plan_seconds += time.perf_counter() - t0
        new_obs = np.empty((len(idx), obs.shape[1]), np.float32)
        rewards = np.empty(len(idx))
        for j, i in enumerate(idx):
            o, r, term, trunc, info = envs[i].step(actions[j])
            new_obs[j], rewards[j] = o, r
            res.returns[i] += float(r)
            res.lengths[i] += 1
            res.env_steps += 1
            if info.get("success") and not res.success[i]:
                res.success[i] = True
                res.first_success[i] = t
            if keep_paths:
                paths[i].append(np.asarray(o, np.float32))
            if term or trunc or (stop_on_success and res.success[i]):
                active[i] = False
        policy.observe(idx, new_obs, rewards)
        if on_step is not None:
            on_step(t)
    res.paths = [np.stack(p) for p in paths]
    res.seconds = time.perf_counter() - t_start
    return res
