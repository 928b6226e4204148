"""Cheetah-vel and Ant-dir as data: the suites' constants (goals, held-out split, sizes,
from ``mujoco_tasks.json``), task-name resolution and the reward functions. Imports no
gymnasium or MuJoCo (the config validates task names with it; the torch-only GPU check
imports the config). The environments are `mtdiff.envs.mujoco_tasks`, which re-exports
all of this and documents the suites.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from mtdiff.envs.task_specs import resolve_spec

SUITES: Final = ("cheetah-vel", "ant-dir")
_SPEC_FILE: Final = Path(__file__).with_name("mujoco_tasks.json")
SET_KINDS: Final = ("all", "train", "heldout")

CHEETAH_CTRL_WEIGHT: Final = 0.05  # Prompt-DT: 0.5 * 1e-1
ANT_CTRL_WEIGHT: Final = 0.5
ANT_CONTACT_WEIGHT: Final = 5e-4  # Prompt-DT: 0.5 * 1e-3
ANT_SURVIVE_REWARD: Final = 1.0
ANT_HEALTHY_Z: Final = (0.2, 1.0)


@dataclass(frozen=True)
class SuiteSpec:
    """One suite's constants (from ``mujoco_tasks.json``)."""

    name: str
    base_env: str  # gymnasium id
    goal: str  # "velocity" (Cheetah-vel) or "direction" (Ant-dir, radians)
    goals: tuple[float, ...]
    heldout: tuple[int, ...]  # task indices
    obs_dim: int
    act_dim: int
    episode_steps: int

    @property
    def tasks(self) -> tuple[str, ...]:
        """All task names, in index order."""
        return tuple(f"{self.name}-{i}" for i in range(len(self.goals)))

    @property
    def train_tasks(self) -> tuple[str, ...]:
        """The training tasks (all but the held-out ones), in index order."""
        return tuple(t for i, t in enumerate(self.tasks) if i not in self.heldout)

    @property
    def heldout_tasks(self) -> tuple[str, ...]:
        """The held-out (test) tasks, in index order."""
        return tuple(self.tasks[i] for i in sorted(self.heldout))

    def index(self, task: str) -> int:
        """Index of a task name of this suite (`ValueError` otherwise)."""
        if task not in self.tasks:
            resolve_tasks(task)  # raises with suggestions for unknown names
            raise ValueError(f"{task!r} is not a {self.name} task; {self.name} tasks are "
                             f"{self.name}-0 .. {self.name}-{len(self.goals) - 1}")
        return self.tasks.index(task)


@functools.cache
def get_suite(name: str) -> SuiteSpec:
    """The suite called `name` ("cheetah-vel" or "ant-dir")."""
    if name not in SUITES:
        raise ValueError(f"unknown MuJoCo suite {name!r}; suites: {', '.join(SUITES)}")
    raw = json.loads(_SPEC_FILE.read_text())[name]
    return SuiteSpec(name, raw["base_env"], raw["goal"], tuple(raw["goals"]),
                     tuple(raw["heldout"]), raw["obs_dim"], raw["act_dim"], raw["episode_steps"])


def suite_of(task: str) -> str:
    """The suite a task name belongs to (`ValueError` for names of no suite)."""
    for s in SUITES:
        if task in get_suite(s).tasks:
            return s
    resolve_tasks(task)  # raises with suggestions
    raise ValueError(f"{task!r} names a task set, not one task; make one env per task")


def _sets() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for s in SUITES:
        spec = get_suite(s)
        out[s] = out[f"{s}:all"] = spec.tasks
        out[f"{s}:train"] = spec.train_tasks
        out[f"{s}:heldout"] = spec.heldout_tasks
    return out


def resolve_tasks(spec: str, *, suite: str | None = None) -> list[str]:
    """The task names a spec stands for.

    `spec`: a task name (``cheetah-vel-7``), a set (``cheetah-vel``, ``cheetah-vel:all``,
    ``cheetah-vel:train``, ``cheetah-vel:heldout``; case-insensitive) or a comma-separated
    mix. Order is kept, duplicates dropped. With `suite`, every task must belong to it.
    An unknown name raises `ValueError` naming it, with close matches and the set names.
    """
    sets = _sets()
    out = resolve_spec(
        spec, sets, [t for s in SUITES for t in get_suite(s).tasks], what="MuJoCo task",
        set_list=", ".join(sets),
        names_hint="task names are '<suite>-<index>' such as 'cheetah-vel-7' "
                   "(cheetah-vel-0..39, ant-dir-0..49)",
        empty_hint=f"give a task set ({', '.join(sets)}) or comma-separated task names such "
                   "as 'cheetah-vel-0,cheetah-vel-1'")
    if suite is not None:
        other = [t for t in out if t not in get_suite(suite).tasks]
        if other:
            raise ValueError(f"{', '.join(other)} not {suite} task(s); give {suite} tasks such "
                             f"as '{suite}:train' or '{suite}-0'")
    return out


# ----------------------------------------------------------------------------------------
# Rewards (pure functions: what the tests check against hand-computed values)
# ----------------------------------------------------------------------------------------


def cheetah_vel_reward(x_velocity: float, goal_velocity: float, action: np.ndarray
                       ) -> tuple[float, dict[str, float]]:
    """-|v_x - v*| - 0.05 ||a||^2, and its parts."""
    forward = -abs(float(x_velocity) - float(goal_velocity))
    ctrl = CHEETAH_CTRL_WEIGHT * float(np.sum(np.square(action)))
    return forward - ctrl, {"reward_forward": forward, "reward_ctrl": -ctrl}


def ant_dir_reward(xy_velocity: np.ndarray, direction: float, action: np.ndarray,
                   cfrc_ext: np.ndarray) -> tuple[float, dict[str, float]]:
    """v_xy . (cos theta, sin theta) - 0.5 ||a||^2 - 5e-4 ||clip(cfrc_ext)||^2 + 1, and its
    parts. The survive bonus is paid on every step, the terminating one included
    (Prompt-DT's AntDirEnv)."""
    forward = float(np.dot(xy_velocity, (np.cos(direction), np.sin(direction))))
    ctrl = ANT_CTRL_WEIGHT * float(np.sum(np.square(action)))
    contact = ANT_CONTACT_WEIGHT * float(np.sum(np.square(np.clip(cfrc_ext, -1.0, 1.0))))
    reward = forward - ctrl - contact + ANT_SURVIVE_REWARD
    return reward, {"reward_forward": forward, "reward_ctrl": -ctrl,
                    "reward_contact": -contact, "reward_survive": ANT_SURVIVE_REWARD}
