"""Shared fixtures: small real datasets on disk, written by the real writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Tests share 2 cores with Ray workers: one thread each (see DEVELOPERS notes).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from mtdiff import keys  # noqa: E402


def make_episode(rng: np.random.Generator, T: int, obs_dim: int = 6, act_dim: int = 2,
                 reward: float | None = None) -> dict[str, np.ndarray]:
    """A random episode dict in the collectors' format."""
    return {
        keys.OBSERVATION: rng.normal(size=(T, obs_dim)).astype(np.float32),
        keys.ACTION: rng.uniform(-1, 1, (T, act_dim)).astype(np.float32),
        keys.REWARD: (np.full(T, reward) if reward is not None else rng.random(T)).astype(
            np.float32),
        keys.TERMINATED: np.zeros(T, bool),
        keys.TRUNCATED: np.r_[np.zeros(T - 1, bool), True],
        keys.SUCCESS: np.zeros(T, bool),
    }


@pytest.fixture
def write_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a finalised dataset of random episodes (tasks x episodes x T) with prompts."""
    from mtdiff.data.prompts import cut_prompt_windows, write_prompts
    from mtdiff.data.writer import TaskWriter, finalize_dataset

    def _make(tasks: tuple[str, ...] = ("a", "b"), episodes: int = 6, T: int = 20,
              obs_dim: int = 6, act_dim: int = 2, shard_rows: int = 50, seed: int = 0,
              name: str = "ds") -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / name
        prompts = {}
        for t in tasks:
            w = TaskWriter(root, t, obs_dim, act_dim, shard_rows)
            eps = [make_episode(rng, T, obs_dim, act_dim) for _ in range(episodes)]
            for i, ep in enumerate(eps):
                w.add_episode(i, ep)
            w.close()
            prompts[t] = cut_prompt_windows(eps[:2], 5, 4, rng)
        write_prompts(root, prompts, obs_dim, act_dim)
        finalize_dataset(root, suite="test", source="random", tasks=list(tasks), config={},
                         config_hash="test")
        return root

    return _make
