"""Prompt-DT's MuJoCo benchmarks, Cheetah-vel and Ant-dir (paper App. H, Table 5).

Rebuilt over gymnasium's ``HalfCheetah-v5`` and ``Ant-v5`` after Prompt-DT's (rlkit /
MACAW-style) ``HalfCheetahVelEnv`` and ``AntDirEnv``. A task is one goal: task ``i`` of
a suite is named ``<suite>-<i>`` (``cheetah-vel-7``, ``ant-dir-41``); the goals, the
held-out split and the sizes are a constant of the suite, shipped in
``mujoco_tasks.json`` next to this file.

Cheetah-vel (40 tasks, target velocity v* = linspace(0.075, 3.0, 40)[i]):

    obs     (20,) float32: qpos[1:] (8), qvel (9), torso position (3)
    action  (6,)  float32 in [-1, 1]
    reward  -|v_x - v*| - 0.05 ||a||^2,  v_x = (x_after - x_before) / dt  (dt = 0.05)
    never terminates; 200 steps

Ant-dir (50 tasks, goal direction theta_i ~ U[0, 2 pi), drawn once with a fixed seed):

    obs     (27,) float32: qpos[2:] (13), qvel (14)  (no contact forces)
    action  (8,)  float32 in [-1, 1]
    reward  v_xy . (cos theta, sin theta) - 0.5 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2 + 1
            v_xy = torso (x, y) displacement / dt
    terminates when the state is not finite or the torso height leaves [0.2, 1.0]; 200 steps

Held-out tasks (Prompt-DT's test tasks): Cheetah-vel 2, 7, 15, 23, 26; Ant-dir 6, 17, 23,
30, 41. Success is not defined for these suites (``info`` has no ``success``): they are
scored by return.

Differences from Prompt-DT's environments (mujoco-py, MuJoCo 2.0): gymnasium's MuJoCo
bindings compute ``cfrc_ext`` (MuJoCo >= 2.0 leaves it zero unless
``mj_rnePostConstraint`` runs, so Prompt-DT's contact cost was always 0; here it is at
most 5e-4 * 84 = 0.042 per step), and the Ant model is gymnasium's ``ant.xml`` (the
same gear 150 ant, without Prompt-DT's goal marker site).

Task names resolve like Meta-World's (`resolve_tasks`): a task name, a set
(``cheetah-vel`` or ``cheetah-vel:all``, ``cheetah-vel:train``, ``cheetah-vel:heldout``)
or a comma-separated mix; unknown names raise `ValueError` with close matches. Importing
this module is cheap: MuJoCo loads when the first environment is made.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, SupportsFloat

import gymnasium as gym
import numpy as np

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
    from mtdiff.envs.task_specs import resolve_spec

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


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


class MujocoTask(gym.Wrapper):
    """One task of Cheetah-vel or Ant-dir: the suite's observation, reward and time limit.

    The wrapped gymnasium env steps the physics (frame skip 5, dt 0.05) and, for Ant,
    decides termination (healthy z in [0.2, 1.0]); the reward is this suite's, computed
    from the simulator state. Actions are clipped to [-1, 1] (the actuators' control
    range, so the physics is unchanged; the control cost uses the clipped action). A
    `reset()` without a seed uses `seed` the first time, so a new env is repeatable.
    """

    def __init__(self, task: str, *, seed: int, max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        self.suite = get_suite(suite_of(task))
        self.task_name = task
        self.task_index = self.suite.index(task)
        self.goal = float(self.suite.goals[self.task_index])
        self.max_episode_steps = max_episode_steps or self.suite.episode_steps
        if self.max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be > 0, got {self.max_episode_steps}")
        kwargs: dict[str, Any] = {}
        if self.suite.name == "ant-dir":
            kwargs = {"include_cfrc_ext_in_observation": False,
                      "healthy_z_range": ANT_HEALTHY_Z, "terminate_when_unhealthy": True}
        env = gym.make(self.suite.base_env, max_episode_steps=self.max_episode_steps,
                       disable_env_checker=True, render_mode=render_mode, **kwargs)
        super().__init__(env)
        d = self.suite.obs_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.suite.act_dim,), dtype=np.float32)
        self.action_space.seed(seed)
        self._first_seed: int | None = seed

    def _obs(self, inner_obs: np.ndarray) -> np.ndarray:
        if self.suite.name == "cheetah-vel":
            data = self.env.unwrapped.data
            # gymnasium's 17 values (qpos[1:], qvel) + the torso's position, as Prompt-DT.
            return np.concatenate([data.qpos[1:], data.qvel,
                                   data.body("torso").xpos]).astype(np.float32)
        return np.asarray(inner_obs, np.float32)  # Ant-v5 without cfrc_ext: qpos[2:], qvel

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (noise 0.1 on qpos and qvel, as Prompt-DT's); obs (obs_dim,) float32."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), {**info, "task": self.task_name, "goal": self.goal}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool,
                                                dict[str, Any]]:
        """One step (5 physics frames); the reward is the suite's, `info` has its parts."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, _, terminated, truncated, info = self.env.step(action)
        if self.suite.name == "cheetah-vel":
            reward, parts = cheetah_vel_reward(info["x_velocity"], self.goal, action)
        else:
            xy = np.array([info["x_velocity"], info["y_velocity"]])
            reward, parts = ant_dir_reward(xy, self.goal, action,
                                           self.env.unwrapped.data.cfrc_ext)
        info = {k: v for k, v in info.items() if not k.startswith("reward_")}
        return self._obs(obs), reward, bool(terminated), bool(truncated), {**info, **parts}


def make_env(task_name: str, *, seed: int, max_episode_steps: int | None = None,
             render_mode: str | None = None) -> MujocoTask:
    """A fresh environment of one Cheetah-vel / Ant-dir task (200 steps unless given)."""
    return MujocoTask(task_name, seed=seed, max_episode_steps=max_episode_steps,
                      render_mode=render_mode)
