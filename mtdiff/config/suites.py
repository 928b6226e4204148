"""Config of the MuJoCo suites of Table 5 (Cheetah-vel, Ant-dir): one section per suite.

Both suites share `MujocoSuiteConfig`; `Config.cheetah_vel` and `Config.ant_dir` are its
two instances (`Config.suite_section` maps a suite name to its section). Task names are
those of `mtdiff.envs.mujoco_tasks.resolve_tasks`; `Config` checks them against the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated

MUJOCO_SUITES: tuple[str, ...] = ("cheetah-vel", "ant-dir")


def section_name(suite: str) -> str:
    """The `Config` attribute of a suite's section ("cheetah-vel" -> "cheetah_vel")."""
    return suite.replace("-", "_")


@dataclass
class MujocoSuiteConfig(_Validated):
    """Cheetah-vel / Ant-dir data: a SAC agent trained from scratch per task (lean SAC,
    `sac` section), as Prompt-DT's datasets were; the paper (App. H) trains on those.

    Each training task's SAC run is `transitions_per_task` env steps; its data is either
    the run's whole replay buffer (``dataset="buffer"``, as Meta-World's App. G data) or
    `expert_episodes` episodes of the final policy, actions sampled (``"expert"``,
    Prompt-DT's "expert" datasets, what the paper's Table 5 trained on). Held-out tasks
    get a SAC run of `heldout_transitions` steps for their prompts only. Prompts of every
    task are cut from `collect.prompt_episodes` episodes of its final policy, acting
    deterministically (the end of the task's SAC run). SAC buffers that are not the
    dataset are kept beside it (``<out>/sac/<task>/``): the collection resumes from them.
    """

    # Training tasks (`mtdiff.envs.mujoco_tasks.resolve_tasks`): "<suite>:train" is
    # Prompt-DT's 35 (Cheetah-vel) or 45 (Ant-dir) training tasks.
    tasks: str
    # Tasks that get prompts only (evaluated as unseen): Prompt-DT's 5 test tasks by
    # default; "" for none. A task in both lists is a training task.
    heldout_tasks: str
    episode_steps: int = 200  # Prompt-DT's horizon for both suites
    # SAC env steps per training task. Paper preset: 1M (MACAW's / App. G's SAC length;
    # Prompt-DT's paper does not state it).
    transitions_per_task: int = 1_000_000
    heldout_transitions: int = 1_000_000  # SAC env steps per held-out task (prompts only)
    # How a held-out task's SAC run starts. "scratch" (default; Prompt-DT trained an expert
    # per task): a fresh agent. "nearest": the final agent of the training task with the
    # closest goal (velocity, or angle), fine-tuned on the held-out task without random
    # warm-up; it waits for that task's run. `local` uses it: 10k steps from scratch do
    # not learn (measured: the prompts' mean velocity stayed ~0 m/s on all 5 held-out
    # Cheetah-vel tasks), so the held-out prompts showed no task at all.
    heldout_init: Literal["scratch", "nearest"] = "scratch"
    dataset: Literal["buffer", "expert"] = "expert"
    # Episodes of the final policy per training task in "expert" mode. Paper preset: 500
    # (100k transitions); Prompt-DT ships per-task "expert" pickles whose size its paper
    # does not give, so this is our choice.
    expert_episodes: int = 500

    def _validate(self) -> None:
        _positive(self, "episode_steps", "transitions_per_task", "heldout_transitions",
                  "expert_episodes")
        _check(bool(self.tasks.strip()), "MujocoSuiteConfig.tasks",
               "needs at least one training task, e.g. 'cheetah-vel:train'")
        _check(self.dataset in ("buffer", "expert"), "MujocoSuiteConfig.dataset",
               f"{self.dataset!r} is not one of 'buffer', 'expert'")
        _check(self.heldout_init in ("scratch", "nearest"), "MujocoSuiteConfig.heldout_init",
               f"{self.heldout_init!r} is not one of 'scratch', 'nearest'")


def cheetah_vel_default() -> MujocoSuiteConfig:
    """Prompt-DT's Cheetah-vel split (35 training, 5 held-out tasks)."""
    return MujocoSuiteConfig(tasks="cheetah-vel:train", heldout_tasks="cheetah-vel:heldout")


def ant_dir_default() -> MujocoSuiteConfig:
    """Prompt-DT's Ant-dir split (45 training, 5 held-out tasks)."""
    return MujocoSuiteConfig(tasks="ant-dir:train", heldout_tasks="ant-dir:heldout")


def check_suite_tasks(suite: str, section: MujocoSuiteConfig) -> None:
    """Raise `ConfigError` unless the section's task specs name tasks of `suite`."""
    # (pulls in numpy: imported on use)
    from mtdiff.envs.mujoco_specs import resolve_tasks

    name = section_name(suite)
    for field_name in ("tasks", "heldout_tasks"):
        spec = getattr(section, field_name)
        if field_name == "heldout_tasks" and not spec.strip():
            continue
        try:
            resolve_tasks(spec, suite=suite)
        except ValueError as e:
            _check(False, f"{name}.{field_name}", str(e))
