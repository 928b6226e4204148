"""What a suite's collection consists of (`SuitePlan`: one `TaskJob` per environment
task), and the per-task seeds and prompt sets every suite's planner uses. The suites'
planners (`maze2d`, `metaworld`, `mujoco`) build plans; `pipeline` runs them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtdiff.config import Config
from mtdiff.data.prompts import cut_prompt_windows


@dataclass
class TaskJob:
    """One unit of collection work (runs inside a Ray task)."""

    task: str
    # fn(job, cfg, root) -> prompt windows (P, J, obs+act); writes data when `rows` > 0.
    fn: Callable[[TaskJob, Config, str], np.ndarray]
    payload: Any  # what fn needs (a map, a task name, ...)
    rows: int  # transitions this job writes (0: prompts only)
    seed: int
    # Tasks whose jobs must finish first (listed earlier in the plan): Ray starts this job
    # only then, holding no CPU while it waits.
    after: tuple[str, ...] = ()


@dataclass
class SuitePlan:
    """What a suite's collection consists of."""

    suite: str
    source: str
    obs_dim: int
    act_dim: int
    jobs: list[TaskJob]
    details: dict[str, Any]  # recorded in the manifest (e.g. map layouts)


def task_seed(base: int, task: str) -> int:
    """A per-task seed that does not depend on the order or number of tasks."""
    return (base * 1_000_003 + zlib.crc32(task.encode())) % (2**31)


def prompt_windows(demos: list[dict[str, np.ndarray]], cfg: Config, seed: int) -> np.ndarray:
    """The task's prompt set from its expert demonstrations."""
    return cut_prompt_windows(demos, cfg.collect.prompt_len, cfg.collect.prompts_per_task,
                              np.random.default_rng(seed + 7), window=cfg.collect.prompt_window)
