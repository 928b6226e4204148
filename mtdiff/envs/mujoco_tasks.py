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

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from mtdiff.envs.mujoco_specs import (  # noqa: F401  (the suites' public names)
    ANT_CONTACT_WEIGHT,
    ANT_CTRL_WEIGHT,
    ANT_HEALTHY_Z,
    ANT_SURVIVE_REWARD,
    CHEETAH_CTRL_WEIGHT,
    SET_KINDS,
    SUITES,
    SuiteSpec,
    ant_dir_reward,
    cheetah_vel_reward,
    get_suite,
    resolve_tasks,
    suite_of,
)

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
