"""Shared fixtures: small real datasets on disk, written by the real writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Tests share 2 cores with Ray workers: one thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from mtdiff.data.random_data import random_episode, write_random_dataset  # noqa: E402


def make_episode(rng: np.random.Generator, T: int, obs_dim: int = 6, act_dim: int = 2
                 ) -> dict[str, np.ndarray]:
    """A random episode dict in the collectors' format (small default widths)."""
    return random_episode(rng, T, obs_dim, act_dim)


@pytest.fixture
def write_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a finalised dataset of random episodes (tasks x episodes x T) with prompts."""

    def _make(tasks: tuple[str, ...] = ("a", "b"), episodes: int = 6, T: int = 20,
              obs_dim: int = 6, act_dim: int = 2, shard_rows: int = 50, seed: int = 0,
              name: str = "ds") -> Path:
        return write_random_dataset(tmp_path / name, tasks=list(tasks), episodes=episodes,
                                    episode_len=T, obs_dim=obs_dim, act_dim=act_dim,
                                    shard_rows=shard_rows, prompt_len=5, prompts_per_task=4,
                                    seed=seed)

    return _make
