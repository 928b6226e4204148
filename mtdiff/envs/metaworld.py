"""Meta-World MT50-rand: task names, named task sets and the environment factory.

MT50-rand (paper §5.1) is Meta-World's 50 manipulation tasks with a random goal per
episode: on every reset one of the task's 50 pre-sampled goals (Meta-World's `MT1`
benchmark, the "train tasks") is set. The goal position is part of the observation.

    obs     (39,) float32: hand xyz, gripper, two objects' pos+quat, the previous
                           frame's 18 values, goal xyz
    action  (4,)  float32 in [-1, 1]: end-effector dx, dy, dz, gripper effort
    reward  float in [0, 10]; `info["success"]` is 0.0/1.0, never terminates

Importing this module is cheap: Meta-World and MuJoCo are imported on first use only,
so a Ray driver can resolve task sets without loading the simulator.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, SupportsFloat

import gymnasium as gym
import numpy as np

from mtdiff.envs.task_specs import resolve_spec

if TYPE_CHECKING:
    from metaworld.sawyer_xyz_env import SawyerXYZEnv
    from metaworld.types import Task

OBS_DIM: Final = 39
ACT_DIM: Final = 4
MAX_EPISODE_STEPS: Final = 500  # Meta-World's own horizon (`SawyerXYZEnv.max_path_length`)
NUM_GOALS: Final = 50  # pre-sampled goals per task (Meta-World's `_N_GOALS`)

# Seed of Meta-World's goal sampling. `metaworld.MT1(name)` without a seed draws the 50
# goals from numpy's global RNG, so two Ray workers would see different "MT50-rand"s;
# one fixed seed makes the goal set a constant of the benchmark, identical everywhere.
GOAL_SET_SEED: Final = 0

# Meta-World's MT50 list (`metaworld.env_dict.ALL_V3_ENVIRONMENTS`), in its order. Spelled
# out so that importing this module does not import MuJoCo; a test checks it against the
# installed package.
ALL_TASKS: Final[tuple[str, ...]] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "pick-place-wall-v3", "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3",
    "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3",
    "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

# Meta-World's MT10 (`metaworld.env_dict.MT10_V3`), in its order.
MT10_TASKS: Final[tuple[str, ...]] = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

# The unseen tasks of MTDiff-S's generalisation study (paper Table 2: box-close,
# hand-insert, bin-picking) plus door-lock and door-unlock. With those two the split is
# exactly Meta-World's own ML45 train/test split, and both have scripted experts that
# succeed 5/5 (benchmarks/metaworld_experts.py), so their prompts and data are clean.
HELDOUT_TASKS: Final[tuple[str, ...]] = (
    "bin-picking-v3", "box-close-v3", "door-lock-v3", "door-unlock-v3", "hand-insert-v3",
)

# Tasks the paper evaluates MTDiff-S on after training on 10/20/30/45 tasks (Table 2's
# seen tasks, Fig. 6 and Fig. 7's task-count study on coffee-push): every ablation set
# must contain them, so they come first in the order the sets are cut from.
_PAPER_SEEN_TASKS: Final = ("coffee-push-v3", "disassemble-v3", "dial-turn-v3", "sweep-into-v3")


def _in_mt50_order(names: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`names` in ALL_TASKS order: one canonical order, so equal sets are equal tuples."""
    chosen = set(names)
    return tuple(t for t in ALL_TASKS if t in chosen)


def _ablation_order() -> tuple[str, ...]:
    """The 45 training tasks ranked for the nested task-count sets.

    Paper-evaluated seen tasks first, then MT10 (the best-known subset), then the rest in
    MT50 order: deterministic, readable, and `tasks-N` is always the first N of it.
    """
    order: list[str] = []
    for name in (*_PAPER_SEEN_TASKS, *MT10_TASKS, *ALL_TASKS):
        if name not in HELDOUT_TASKS and name not in order:
            order.append(name)
    return tuple(order)


_TRAIN_TASKS: Final = _in_mt50_order(set(ALL_TASKS) - set(HELDOUT_TASKS))

# Named task sets. Every set except MT10 is listed in MT50 order (so tasks-45 == train-45
# exactly, task ids agree); MT10 keeps Meta-World's order.
TASK_SETS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "MT10": MT10_TASKS,
    "MT50": ALL_TASKS,
    **{f"tasks-{n}": _in_mt50_order(_ablation_order()[:n]) for n in (10, 20, 30, 45)},
    "train-45": _TRAIN_TASKS,
    "heldout-5": _in_mt50_order(HELDOUT_TASKS),
})  # read-only: a set edited at run time would silently change task ids


def resolve_tasks(spec: str) -> list[str]:
    """The task names a spec stands for.

    `spec` is a set name from `TASK_SETS` (case-insensitive), "all", a task name, or a
    comma-separated mix of these ("MT10,coffee-push-v3"). Order is kept, duplicates are
    dropped. An unknown name raises `ValueError` naming it, with close matches and the
    set names.
    """
    return resolve_spec(
        spec, {**TASK_SETS, "all": ALL_TASKS}, ALL_TASKS, what="Meta-World task",
        set_list=f"{', '.join(TASK_SETS)}, all",
        names_hint="task names are Meta-World v3 names such as 'reach-v3' (see "
                   "mtdiff.envs.metaworld.ALL_TASKS)",
        empty_hint=f"give a set name ({', '.join(TASK_SETS)}, all) or comma-separated task "
                   "names such as 'reach-v3,push-v3'")


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


def _check_one_task(task_name: str) -> None:
    """Raise a readable `ValueError` unless `task_name` is one v3 task name."""
    if task_name not in ALL_TASKS:
        names = resolve_tasks(task_name)  # raises for unknown names, with suggestions
        raise ValueError(f"expected one Meta-World task name, got {task_name!r} "
                         f"({len(names)} tasks); make one env per task")


@functools.cache
def goal_tasks(task_name: str) -> tuple[Task, ...]:
    """The task's 50 pre-sampled goals as Meta-World `Task`s, built once per process.

    `metaworld.MT1` resets a fresh env 50 times to sample the goals (~0.7 s per task),
    so the result is cached: later envs of the same task cost only the MuJoCo model load.
    """
    import metaworld  # deferred: MuJoCo is heavy to import

    _check_one_task(task_name)
    benchmark = metaworld.MT1(task_name, seed=GOAL_SET_SEED)
    return tuple(benchmark.train_tasks)


class MetaWorldTask(gym.Wrapper):
    """One Meta-World task with MT50-rand goals, float32 observations and a time limit.

    On every `reset` a goal index is drawn from the env's own generator (seeded by
    `seed`, or re-seeded by `reset(seed=...)`), so a run is repeatable: same seed, same
    goal sequence, same observations for the same actions. `reset(options={"goal_index":
    k})` sets goal k instead (e.g. to evaluate every goal once). The reset's info carries
    `goal_index`; step's info is Meta-World's (with `success`) unchanged.
    """

    def __init__(self, env: SawyerXYZEnv, task_name: str, tasks: tuple[Task, ...], *,
                 seed: int, max_episode_steps: int = MAX_EPISODE_STEPS) -> None:
        if max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be > 0, got {max_episode_steps}")
        # Meta-World raises once its own step counter passes `max_path_length`; lift it to
        # our limit so the two counters agree (longer than 500 is allowed, as in D4RL).
        env.max_path_length = max_episode_steps
        # A goal must be set before the observation space is read: the goal's bounds
        # (last 3 dims) depend on the task's observability, which `set_task` switches on.
        env.set_task(tasks[0])
        super().__init__(env)
        self.task_name = task_name
        self.tasks = tasks
        self.max_episode_steps = max_episode_steps
        # `sawyer_observation_space`, not `observation_space`: Meta-World recomputes only
        # the former when `set_task` makes the goal observable (the latter keeps goal
        # bounds of 0, so real observations would fall outside it).
        inner = env.sawyer_observation_space
        self.observation_space = gym.spaces.Box(
            inner.low.astype(np.float32), inner.high.astype(np.float32), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), dtype=np.float32)
        self.goal_index = 0
        self._elapsed = 0
        self._goal_rng = np.random.default_rng(seed)
        env.seed(seed)  # Meta-World's own generator (action/obs space sampling)
        self.action_space.seed(seed)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Set a goal (random, or `options["goal_index"]`) and reset; obs is (39,) float32."""
        if seed is not None:
            self._goal_rng = np.random.default_rng(seed)
            self.env.unwrapped.seed(seed)  # gymnasium's contract: reset(seed) reseeds all
            self.action_space.seed(seed)
        if options and "goal_index" in options:
            index = int(options["goal_index"])
            if not 0 <= index < len(self.tasks):
                raise ValueError(f"goal_index must be in [0, {len(self.tasks)}), got {index}")
        else:
            index = int(self._goal_rng.integers(len(self.tasks)))
        self.goal_index = index
        self.env.unwrapped.set_task(self.tasks[index])
        obs, info = self.env.reset()
        self._elapsed = 0
        return obs.astype(np.float32), {**info, "goal_index": index}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool,
                                                dict[str, Any]]:
        """Step with the action clipped to [-1, 1] (what Meta-World executes anyway)."""
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, reward, terminated, _, info = self.env.step(action)
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps
        return obs.astype(np.float32), float(reward), bool(terminated), truncated, info


def make_env(task_name: str, *, seed: int, max_episode_steps: int = MAX_EPISODE_STEPS,
             render_mode: str | None = None) -> MetaWorldTask:
    """A fresh MT50-rand env for one task: random goal per reset, repeatable per `seed`.

    The first env of a task in a process samples the goal set (~0.7 s, cached); each
    env after that costs the MuJoCo model load (~0.1 s).
    """
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    tasks = goal_tasks(task_name)
    env = ALL_V3_ENVIRONMENTS[task_name](render_mode=render_mode)
    return MetaWorldTask(env, task_name, tasks, seed=seed, max_episode_steps=max_episode_steps)
