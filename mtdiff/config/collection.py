"""The collection's config sections: Maze2D and Meta-World (the paper's suites), SAC (the
Meta-World and MuJoCo data sources) and the collection stage itself. The MuJoCo suites'
sections are in `mtdiff.config.suites`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated


@dataclass
class Maze2DConfig(_Validated):
    """Maze2D data (paper App. D): D4RL's waypoint expert on our PointMaze maps."""

    # Map names shipped in mtdiff/envs/maps/ or paths of map text files (# wall, O free, G goal).
    train_maps: tuple[str, ...] = (
        "train-0", "train-1", "train-2", "train-3", "train-4", "train-5", "train-6", "train-7",
    )
    unseen_maps: tuple[str, ...] = ("unseen-0", "unseen-1")
    episodes_per_map: int = 4375  # paper: 35k episodes over 8 maps
    episode_steps: int = 600  # paper App. D: 600 for training, 200 for evaluation
    eval_episode_steps: int = 200
    # How the expert's episodes are made:
    # "d4rl" (paper, default): D4RL's generator, one continuing trajectory toward random
    #   goal cells, a new one whenever the current one is reached; with probability
    #   `goal_prob` the new goal is the map's own goal G (0 = D4RL/paper).
    # "goal": every episode starts in a random free cell and the expert heads for G, the
    #   episode ending on arrival (`episode_steps` is then the cap): demonstrations of the
    #   evaluation task. The `local` preset uses
    #   it: with ~1/800 of the paper's gradient samples, a model cannot learn from D4RL's
    #   random-goal data where G is (measured: 0.17 success on the training maps).
    episodes: Literal["d4rl", "goal"] = "d4rl"
    goal_prob: float = 0.0
    action_noise: float = 0.0  # std of Gaussian noise added to the expert's action
    p_gain: float = 10.0  # D4RL WaypointController gains
    d_gain: float = -1.0
    goal_threshold: float = 0.5  # distance that counts as reaching a goal (D4RL: 0.5)

    def _validate(self) -> None:
        _positive(self, "episodes_per_map", "episode_steps", "eval_episode_steps", "goal_threshold")
        _check(len(self.train_maps) > 0, "Maze2DConfig.train_maps", "needs at least one map")
        _check(0.0 <= self.goal_prob <= 1.0, "Maze2DConfig.goal_prob", "must be in [0, 1]")
        _check(self.episodes in ("d4rl", "goal"), "Maze2DConfig.episodes",
               f"{self.episodes!r} is not one of 'd4rl', 'goal'")
        _check(self.action_noise >= 0.0, "Maze2DConfig.action_noise", "must be >= 0")


@dataclass
class MetaWorldConfig(_Validated):
    """Meta-World MT50-rand data (paper App. G)."""

    tasks: str = "MT50"  # a named subset (MT10, MT50, tasks-10/20/30/45, train-45) or a,b,c
    source: Literal["sac", "scripted"] = "sac"
    transitions_per_task: int = 1_000_000  # paper: 1M per task from SAC's replay buffer
    episode_steps: int = 500
    # Scripted experts stand in for SAC's replay buffer, worst episodes first (as a learning
    # agent's), so the sub-optimal view (first 50%, paper App. G) is the worse half: the
    # first `scripted_random` of a task's episodes act uniformly at random (SAC's warm-up),
    # the rest are split evenly, in the order given, over these action-noise stds (sized by
    # `benchmarks/scripted_quality.py`: noise <= 0.5 barely hurts the experts).
    # scripted_noise=0.0,0.1,0.3,0.5 scripted_random=0.0 puts the cleanest half first.
    scripted_noise: tuple[float, ...] = (2.0, 1.0, 0.5, 0.2, 0.0)
    scripted_random: float = 0.1

    def _validate(self) -> None:
        _positive(self, "transitions_per_task", "episode_steps")
        _check(any(t.strip() for t in self.tasks.split(",")), "MetaWorldConfig.tasks",
               f"empty task spec {self.tasks!r}; give a set name (MT10, MT50, tasks-10, ..., "
               "all) or comma-separated task names such as 'reach-v3,push-v3'")
        _check(len(self.scripted_noise) > 0, "MetaWorldConfig.scripted_noise",
               "needs at least one noise level")
        _check(all(n >= 0 for n in self.scripted_noise), "MetaWorldConfig.scripted_noise",
               "noise levels must be >= 0")
        _check(0.0 <= self.scripted_random < 1.0, "MetaWorldConfig.scripted_random",
               f"must be in [0, 1), got {self.scripted_random}")


@dataclass
class SACConfig(_Validated):
    """The SAC agent behind `metaworld.source=sac` (paper App. G; CleanRL's defaults)."""

    backend: Literal["lean", "rllib"] = "lean"  # ours (mtdiff.collect.sac) or RLlib's SAC
    hidden: int = 256  # width of the 2 hidden layers of policy and critics
    lr: float = 3e-4  # Adam, policy, critics and temperature
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    batch_size: int = 256
    learning_starts: int = 5_000  # uniform random actions before the first update
    updates_per_step: int = 1
    eval_every: int = 10_000  # env steps between evaluations (deterministic policy)
    eval_episodes: int = 10

    def _validate(self) -> None:
        _positive(self, "hidden", "lr", "batch_size", "updates_per_step", "eval_every",
                  "eval_episodes")
        _check(0.0 < self.gamma < 1.0, "SACConfig.gamma", "must be in (0, 1)")
        _check(0.0 < self.tau <= 1.0, "SACConfig.tau", "must be in (0, 1]")
        _check(self.learning_starts >= 0, "SACConfig.learning_starts", "must be >= 0")


@dataclass
class CollectConfig(_Validated):
    """What every collection shares: seeding, sharding, prompts and Ray resources."""

    seed: int = 0
    shard_rows: int = 100_000  # transitions per Parquet shard (also the resume granularity)
    prompt_episodes: int = 5  # expert demonstrations per task kept for prompts
    prompts_per_task: int = 50  # J-step windows cut from them (the prompt set Z)
    prompt_len: int = 20  # J (paper App. A)
    # Where prompt windows are cut from a demonstration. The paper does not say; the
    # authors start Meta-World windows in [0, 150) of a 500-step demo. "before-success"
    # (default): windows ending at or before the demo's first success (anywhere in a demo
    # that never succeeds): the task being solved. "anywhere" (before): uniform over the
    # demo, mostly the arm hovering after success. Maze2D demos end at G: no difference.
    prompt_window: Literal["before-success", "anywhere"] = "before-success"
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0

    def _validate(self) -> None:
        _positive(self, "shard_rows", "prompt_episodes", "prompts_per_task", "prompt_len",
                  "num_cpus_per_task")
        _check(self.num_gpus_per_task >= 0, "CollectConfig.num_gpus_per_task", "must be >= 0")
