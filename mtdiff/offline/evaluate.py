"""Evaluating a state-based policy on a Meta-World task: success rate and mean return.

Several environments are stepped together, so each step costs one batched policy call.
An episode counts as a success when `info["success"]` is true at any step (Meta-World's
convention, paper Table 2); episodes run to the time limit unless `stop_on_success`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtdiff.envs.metaworld import MAX_EPISODE_STEPS, make_env

Policy = Callable[[np.ndarray], np.ndarray]  # raw states (N, obs_dim) -> actions (N, act_dim)


@dataclass
class EvalResult:
    """Outcome of `evaluate_policy` over `episodes` episodes."""

    success_rate: float  # fraction of episodes with info["success"] at some step
    mean_return: float  # undiscounted, up to the time limit (or to success if stopped there)
    episodes: int
    successes: np.ndarray  # (episodes,) bool
    returns: np.ndarray  # (episodes,) float


def evaluate_policy(policy: Policy, task: str, *, episodes: int, seed: int = 0,
                    num_envs: int = 10, max_episode_steps: int = MAX_EPISODE_STEPS,
                    stop_on_success: bool = False) -> EvalResult:
    """Run `episodes` MT50-rand episodes of `task` (random goal each) with `policy`.

    `num_envs` environments (seeds `seed*1000 + i`) step in lockstep; episodes are played in
    waves of `num_envs`, so the same arguments give the same goals and results.
    """
    if episodes <= 0 or num_envs <= 0:
        raise ValueError(f"episodes and num_envs must be > 0, got {episodes}, {num_envs}")
    n_envs = min(num_envs, episodes)
    envs = [make_env(task, seed=seed * 1000 + i, max_episode_steps=max_episode_steps)
            for i in range(n_envs)]
    successes: list[bool] = []
    returns: list[float] = []
    try:
        while len(successes) < episodes:
            wave = envs[:min(n_envs, episodes - len(successes))]
            obs = np.stack([env.reset()[0] for env in wave])  # (W, obs_dim)
            ret = np.zeros(len(wave))
            succ = np.zeros(len(wave), bool)
            live = np.ones(len(wave), bool)
            while live.any():
                idx = np.flatnonzero(live)
                actions = np.asarray(policy(obs[idx]), np.float32)  # one call for all
                for j, a in zip(idx, actions, strict=True):
                    o, r, terminated, truncated, info = wave[j].step(a)
                    obs[j] = o
                    ret[j] += float(r)
                    succ[j] |= bool(info["success"])
                    if terminated or truncated or (stop_on_success and succ[j]):
                        live[j] = False
            successes.extend(succ.tolist())
            returns.extend(ret.tolist())
    finally:
        for env in envs:
            env.close()
    s, r = np.array(successes), np.array(returns)
    return EvalResult(float(s.mean()), float(r.mean()), episodes, s, r)
