"""What the SAC collector needs to know of a suite: widths, episode length, budget, envs.

`SACTaskRun`, `evaluate`, `EpisodeRecorder` (`mtdiff.collect.metaworld`) and the lean
backend's loop (`mtdiff.collect.sac.collect_task_lean`) take one of these; without one
they use Meta-World's (`metaworld_sac_env`), as before the MuJoCo suites existed. It is
plain data (picklable), so a Ray task can receive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gymnasium as gym

    from mtdiff.config import Config


@dataclass(frozen=True)
class SACEnv:
    """One suite as the SAC collector sees it."""

    suite: str  # "metaworld", "cheetah-vel" or "ant-dir"
    obs_dim: int
    act_dim: int
    episode_steps: int  # time limit of an episode
    transitions: int  # env steps (= rows written) of one task's SAC run

    def make(self, task: str, seed: int) -> gym.Env:
        """A fresh environment of `task` with this time limit."""
        if self.suite == "metaworld":
            # (pulls in gymnasium: imported on use)
            from mtdiff.envs.metaworld import make_env

            return make_env(task, seed=seed, max_episode_steps=self.episode_steps)
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.mujoco_tasks import make_env as make_mujoco

        return make_mujoco(task, seed=seed, max_episode_steps=self.episode_steps)


def metaworld_sac_env(cfg: Config) -> SACEnv:
    """Meta-World's: 39/4 wide, `metaworld.episode_steps`, `metaworld.transitions_per_task`."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM

    return SACEnv("metaworld", OBS_DIM, ACT_DIM, cfg.metaworld.episode_steps,
                  cfg.metaworld.transitions_per_task)
