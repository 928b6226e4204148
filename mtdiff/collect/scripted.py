"""Scripted Meta-World experts (`metaworld.policies`) with injected Gaussian action noise.

A fast alternative to SAC's replay buffer as a data source (DESIGN.md, collect), and the
source of the few-shot prompts: `expert_demos` are the noise-free episodes that prompt
windows are cut from.

Every episode is a dict of numpy arrays keyed by `mtdiff.keys`, T = max_episode_steps:

    OBSERVATION (T, 39) float32  s_t, the observation the action was chosen from
    ACTION      (T, 4)  float32  a_t actually executed: clip(expert(s_t) + N(0, σ²), -1, 1)
                                 (or U[-1, 1]^4 for a random-action episode)
    REWARD      (T,)    float32  r_t returned by step(a_t)
    TERMINATED  (T,)    bool     always False (Meta-World has no terminal states)
    TRUNCATED   (T,)    bool     True at the last step only (the time limit)
    SUCCESS     (T,)    bool     info["success"] after step(a_t)

Episodes always run to the time limit, success or not, like D4RL's datasets: the steps
after success are valid data (the expert holding the goal).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from mtdiff import keys
from mtdiff.envs.metaworld import (
    ACT_DIM,
    MAX_EPISODE_STEPS,
    OBS_DIM,
    MetaWorldTask,
    make_env,
    resolve_tasks,
)

if TYPE_CHECKING:
    from metaworld.policies.policy import Policy

Episode = dict[str, np.ndarray]


def scripted_policy(task_name: str) -> Policy:
    """Meta-World's scripted expert for `task_name` (e.g. "reach-v3"); `.get_action(obs)`."""
    from metaworld.policies import ENV_POLICY_MAP

    if task_name not in ENV_POLICY_MAP:
        resolve_tasks(task_name)  # unknown name: raises with close matches
        raise ValueError(f"no scripted policy for {task_name!r}; give one task name")
    return ENV_POLICY_MAP[task_name]()


def _expert_action(policy: Policy, obs: np.ndarray) -> np.ndarray:
    """The expert's action for `obs` (4,) float32, not yet clipped."""
    # The policies' P-controllers warn "Constant(s) may be too high" whenever a response
    # exceeds 1 (most steps, by design: the env clips). Silence just that, locally, so a
    # 500-step episode neither floods the log nor pays for warning bookkeeping.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        return np.asarray(policy.get_action(obs.astype(np.float64)), dtype=np.float32)


def rollout_scripted(task_name: str, *, num_episodes: int, noise_std: float, seed: int,
                     max_episode_steps: int = MAX_EPISODE_STEPS,
                     random_actions: bool = False) -> Iterator[Episode]:
    """Yield `num_episodes` episodes of the scripted expert with Gaussian action noise.

    One env is made for all episodes; each reset draws an MT50-rand goal. `seed` fixes
    everything (goal sequence and noise), so the same arguments give the same episodes.
    Goals and noise come from independent streams of one `SeedSequence`, so changing
    `noise_std` keeps the goal sequence. Give each (task, noise level, chunk) its own seed.
    random_actions: uniform random actions in [-1, 1]^4 instead of the expert's (a
    learning agent's warm-up episodes); noise_std is then unused.
    """
    if num_episodes < 0:
        raise ValueError(f"num_episodes must be >= 0, got {num_episodes}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    env_seed, noise_seed = np.random.SeedSequence(seed).generate_state(2)
    env = make_env(task_name, seed=int(env_seed), max_episode_steps=max_episode_steps)
    policy = scripted_policy(task_name)
    rng = np.random.default_rng(noise_seed)
    try:
        for _ in range(num_episodes):
            yield _run_episode(env, None if random_actions else policy, rng, noise_std,
                               max_episode_steps)
    finally:
        env.close()


def _run_episode(env: MetaWorldTask, policy: Policy | None, rng: np.random.Generator,
                 noise_std: float, steps: int) -> Episode:
    """One full-length episode (see the module docstring for the dict); policy None: uniform
    random actions."""
    obs_buf = np.empty((steps, OBS_DIM), np.float32)
    act_buf = np.empty((steps, ACT_DIM), np.float32)
    rew_buf = np.empty(steps, np.float32)
    trunc_buf = np.zeros(steps, bool)
    succ_buf = np.zeros(steps, bool)
    obs, _ = env.reset()
    for t in range(steps):
        if policy is None:
            action = rng.uniform(-1.0, 1.0, ACT_DIM).astype(np.float32)
        else:
            action = _expert_action(policy, obs)
        if policy is not None and noise_std > 0:
            action = action + rng.normal(0.0, noise_std, ACT_DIM).astype(np.float32)
        action = np.clip(action, -1.0, 1.0)  # record what the env executes
        obs_buf[t] = obs
        act_buf[t] = action
        obs, reward, _, truncated, info = env.step(action)
        rew_buf[t] = reward
        succ_buf[t] = bool(info["success"])
        trunc_buf[t] = truncated
    return {
        keys.OBSERVATION: obs_buf,
        keys.ACTION: act_buf,
        keys.REWARD: rew_buf,
        keys.TERMINATED: np.zeros(steps, bool),
        keys.TRUNCATED: trunc_buf,
        keys.SUCCESS: succ_buf,
    }


def expert_demos(task_name: str, *, num_episodes: int, seed: int,
                 max_episode_steps: int = MAX_EPISODE_STEPS) -> list[Episode]:
    """Noise-free expert episodes (the prompt source): `rollout_scripted` with σ = 0."""
    return list(rollout_scripted(task_name, num_episodes=num_episodes, noise_std=0.0,
                                 seed=seed, max_episode_steps=max_episode_steps))
