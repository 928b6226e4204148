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
# Every Ray the tests start is a fresh local instance (they kill drivers and count CPUs):
# never attach to a cluster that `ray start` left running on this machine, which is what
# `ray.init()` does by default.
os.environ["RAY_ADDRESS"] = "local"

from mtdiff.config import apply_overrides, get_preset  # noqa: E402
from mtdiff.data.random_data import random_episode, write_random_dataset  # noqa: E402


def make_episode(rng: np.random.Generator, T: int, obs_dim: int = 6, act_dim: int = 2
                 ) -> dict[str, np.ndarray]:
    """A random episode dict in the collectors' format (small default widths)."""
    return random_episode(rng, T, obs_dim, act_dim)


@pytest.fixture(autouse=True)
def _own_ray_for_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands a test starts get a Ray instance of their own, even after code run in this
    process started one (`init_ray` exports that instance's address as $RAY_ADDRESS)."""
    monkeypatch.setenv("RAY_ADDRESS", "local")


def fresh_ray(**kwargs) -> None:
    """`ray.init(**kwargs)` for a test that needs its own instance: one an earlier test left
    connected in this process is let go first (`ray.init` refuses to run twice)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(**kwargs)


@pytest.fixture(autouse=True, scope="module")
def _no_ray_across_modules():
    """In-process stage calls (`init_ray`) leave Ray connected for speed within a module;
    the next module starts without it, so its `ray.init` and its CPU counts are its own."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


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


def untrained_checkpoint(cfg: object, data: Path, prompts: dict[str, np.ndarray],
                         dims: tuple[int, int], *, suite: str, source: str, tasks: list[str],
                         out: Path) -> Path:
    """Write `prompts` ((obs_dim, act_dim) = dims) and the manifest of the collected
    `data`, then an untrained checkpoint of `cfg`'s model over it at `out` (the real
    writer and training set-up)."""
    import torch

    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.writer import finalize_dataset
    from mtdiff.train.core import EMA, build_setup, save_checkpoint

    write_prompts(data, prompts, *dims)
    finalize_dataset(data, suite=suite, source=source, tasks=tasks, config={},
                     config_hash="t")
    setup = build_setup(cfg, data)
    save_checkpoint(out, model=setup.model, ema=EMA(setup.model, 0.9),
                    optimizer=torch.optim.Adam(setup.model.parameters()), step=0,
                    meta=setup.meta)
    return out


@pytest.fixture
def maze_checkpoint(tmp_path):
    """An untrained MTDiff-P checkpoint over a real Maze2D smoke dataset (obs 4, act 2)."""
    from mtdiff.collect.maze2d import _maze_job, plan_maze2d

    cfg = apply_overrides(get_preset("smoke"), ["maze2d.train_maps=train-0",
                                                "maze2d.unseen_maps=unseen-0",
                                                "maze2d.episodes_per_map=2"])
    data = tmp_path / "data"
    prompts = {j.task: _maze_job(j, cfg, str(data)) for j in plan_maze2d(cfg).jobs}
    return untrained_checkpoint(cfg, data, prompts, (4, 2), suite="maze2d", source="test",
                                tasks=["train-0"], out=tmp_path / "ckpt"), cfg


@pytest.fixture
def synth_checkpoint(tmp_path):
    """An untrained MTDiff-S checkpoint over a real scripted Meta-World dataset."""
    from mtdiff.collect.metaworld import _scripted_job, plan_metaworld

    cfg = apply_overrides(get_preset("smoke"), ["metaworld.tasks=reach-v3",
                                                "metaworld.transitions_per_task=200",
                                                "model.kind=mtdiff-s"])
    data = tmp_path / "data"
    jobs = [j for j in plan_metaworld(cfg).jobs if j.task == "reach-v3"]
    prompts = {j.task: _scripted_job(j, cfg, str(data)) for j in jobs}
    ckpt = untrained_checkpoint(cfg, data, prompts, (39, 4), suite="metaworld",
                                source="scripted", tasks=["reach-v3"], out=tmp_path / "ckpt")
    return ckpt, data, cfg


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A reproduction folder: a tiny graph of every kind of record the report reads
    (tests/report_graph.py writes it; the report tests' numbers are computed there)."""
    from tests.report_graph import write_reproduction

    return write_reproduction(tmp_path)
