"""Random-valued datasets in the real on-disk format, for benchmarks and tests.

Shapes, layout and code paths are those of a collected dataset (real Parquet shards, a
manifest, prompts); only the numbers are random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtdiff import keys
from mtdiff.data.prompts import cut_prompt_windows, write_prompts
from mtdiff.data.writer import TaskWriter, finalize_dataset


def random_episode(rng: np.random.Generator, T: int, obs_dim: int, act_dim: int
                   ) -> dict[str, np.ndarray]:
    """An episode dict of T random steps (truncated at its end)."""
    return {
        keys.OBSERVATION: rng.normal(size=(T, obs_dim)).astype(np.float32),
        keys.ACTION: rng.uniform(-1, 1, (T, act_dim)).astype(np.float32),
        keys.REWARD: rng.random(T).astype(np.float32),
        keys.TERMINATED: np.zeros(T, bool),
        keys.TRUNCATED: np.r_[np.zeros(T - 1, bool), True],
        keys.SUCCESS: np.zeros(T, bool),
    }


def write_random_dataset(root: str | Path, *, tasks: int | list[str], episodes: int,
                         episode_len: int, obs_dim: int, act_dim: int, shard_rows: int = 50_000,
                         prompt_len: int = 20, prompts_per_task: int = 50, seed: int = 0) -> Path:
    """A finalised dataset of random episodes with prompt sets; returns its folder."""
    rng = np.random.default_rng(seed)
    names = tasks if isinstance(tasks, list) else [f"task-{i:02d}" for i in range(tasks)]
    prompts = {}
    for name in names:
        w = TaskWriter(root, name, obs_dim, act_dim, shard_rows)
        demos = []
        for e in range(episodes):
            ep = random_episode(rng, episode_len, obs_dim, act_dim)
            w.add_episode(e, ep)
            if e < 2:
                demos.append(ep)
        w.close()
        prompts[name] = cut_prompt_windows(demos, prompt_len, prompts_per_task, rng)
    write_prompts(root, prompts, obs_dim, act_dim)
    finalize_dataset(root, suite="random", source="random", tasks=names, config={},
                     config_hash="random")
    return Path(root)


def write_tanh_policy_dataset(root: str | Path, *, weights: dict[str, np.ndarray],
                              bias: dict[str, np.ndarray] | None = None, episodes: int = 20,
                              episode_len: int = 50, noise: float = 0.1, prompt_len: int = 20,
                              prompts_per_task: int = 50, seed: int = 0) -> Path:
    """A finalised dataset whose actions a known policy chose: per task (name -> W
    (act_dim, obs_dim)), s ~ N(0, I) and a = clip(tanh(W s + b) + noise * N(0, I), -1, 1);
    reward = -|a - tanh(W s + b)|_1 (the better action, the higher). Prompts are windows
    of noise-free demonstrations. W = 0 with a per-task b gives actions that ignore the
    state; one W for every task, actions that ignore the task."""
    rng = np.random.default_rng(seed)
    prompts = {}
    for name, W in weights.items():
        act_dim, obs_dim = W.shape
        b = np.zeros(act_dim) if bias is None else np.asarray(bias[name])
        w = TaskWriter(root, name, obs_dim, act_dim, 50_000)
        demos = []
        for e in range(episodes):
            ep = random_episode(rng, episode_len, obs_dim, act_dim)
            clean = np.tanh(ep[keys.OBSERVATION] @ W.T + b).astype(np.float32)
            ep[keys.ACTION] = np.clip(clean + noise * rng.normal(size=clean.shape), -1, 1
                                      ).astype(np.float32)
            ep[keys.REWARD] = -np.abs(ep[keys.ACTION] - clean).sum(1).astype(np.float32)
            w.add_episode(e, ep)
            if e < 2:
                demos.append({**ep, keys.ACTION: clean})
        w.close()
        prompts[name] = cut_prompt_windows(demos, prompt_len, prompts_per_task, rng)
    write_prompts(root, prompts, obs_dim, act_dim)
    finalize_dataset(root, suite="random", source="tanh-policy", tasks=list(weights),
                     config={}, config_hash="tanh-policy")
    return Path(root)
