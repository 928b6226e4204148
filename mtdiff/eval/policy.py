"""The policy interface the rollout calls, and MTDiff-P's implementation of it.

Every evaluated method (MTDiff-P and its variants, the baselines, a distilled planner)
is a `Policy`: it acts for N environments at once and keeps whatever context it needs
(a state history, a return-to-go, a token context) between calls:

    policy.begin(obs0, prompts=..., task_ids=..., env_tasks=...)  # (N, obs_dim) first obs.
    for t in ...:
        actions = policy.act(idx)                     # (n, act_dim) for envs idx
        ... step envs idx ...
        policy.observe(idx, obs, rewards)             # (n, obs_dim), (n,)

Conditioning: a policy declares ``conditioning = "prompt"`` (it takes (N, J, obs+act)
prompt windows of the task, `sample_prompts` draws them from its prompt sets) or
``"task_id"`` (indices into its training tasks: the one-hot variants and MT-BC & co.).
``env_tasks`` names each environment's task (the one its prompt or task id stands for):
policies that need per-task constants at test time use it (the Decision Transformers:
the task's return scale, as DT's per-environment target returns); others ignore it.

`load_policy(checkpoint, ...)` builds the policy of whatever method trained the
checkpoint (`mtdiff.methods`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from mtdiff.artifacts import Checkpoint
from mtdiff.config import DiffusionConfig
from mtdiff.eval.planner import load_planner

Conditioning = Literal["prompt", "task_id"]


class Policy(Protocol):
    """What `mtdiff.eval.rollout.rollout` needs of a method (module docstring)."""

    conditioning: Conditioning
    tasks: list[str]  # training tasks (task_id i = tasks[i])
    prompts: dict[str, np.ndarray]  # task -> (P, J, obs+act) raw prompt windows

    def begin(self, obs: np.ndarray, *, prompts: np.ndarray | None,
              task_ids: np.ndarray | None, env_tasks: list[str] | None = None) -> None: ...

    def act(self, idx: np.ndarray) -> np.ndarray: ...

    def observe(self, idx: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None: ...


class PolicyBase:
    """Shared parts: prompt sets, task list, drawing prompt windows."""

    conditioning: Conditioning = "prompt"
    # "demo": prompts are windows of demonstrations; "layout": a Maze2D map's layout
    # (`layout_prompt`; MTDiff-P trained with data.prompt_kind=layout).
    prompt_kind: str = "demo"

    def __init__(self, tasks: list[str], prompts: dict[str, np.ndarray] | None,
                 prompt_len: int) -> None:
        self.tasks = list(tasks)
        self.prompts = dict(prompts or {})
        self.prompt_len = int(prompt_len)

    def sample_prompts(self, task: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random windows of a task's prompt set (raw), (n, J, obs+act)."""
        if task not in self.prompts:
            raise KeyError(f"no prompt set for task {task!r}; known: {sorted(self.prompts)}")
        p = self.prompts[task][:, : self.prompt_len]
        return p[rng.integers(len(p), size=n)]

    def task_index(self, task: str) -> int:
        """task_id of a training task; others raise (the one-hot variants know no others)."""
        if task not in self.tasks:
            raise ValueError(f"this {type(self).__name__} conditions on task ids and only "
                             f"knows its training tasks; {task!r} is not one of them (that is "
                             "the point of prompts)")
        return self.tasks.index(task)


class PlannerPolicy(PolicyBase):
    """MTDiff-P as a policy (Alg. 1): keep the last L states, plan an action sequence for
    every active environment in one batched denoising call, execute its first action."""

    def __init__(self, planner: Any, *, diffusion: DiffusionConfig | None = None,
                 target_return: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(planner.tasks, planner.prompts, planner.build["prompt_len"])
        self.planner = planner
        self.conditioning = "task_id" if planner.m.meta["kind"] == "mtdiff-p-onehot" \
            else "prompt"
        self.prompt_kind = planner.prompt_kind
        self.diffusion = diffusion
        self.target_return = target_return  # None: the checkpoint's natural target
        self.generator = generator
        self.hist = np.zeros((0, planner.history, planner.build["obs_dim"]), np.float32)
        self._prompts: np.ndarray | None = None
        self._task_ids: np.ndarray | None = None

    @property
    def history(self) -> int:
        """L: states of history the planner conditions on."""
        return self.planner.history

    def layout_prompt(self, maze: Any) -> np.ndarray:
        """A Maze2D map's layout prompt set (1, cells, 5) (a layout checkpoint)."""
        return self.planner.layout_prompt(maze)

    def begin(self, obs: np.ndarray, *, prompts: np.ndarray | None,
              task_ids: np.ndarray | None, env_tasks: list[str] | None = None) -> None:
        """History before the first step repeats the initial state (training's padding)."""
        obs = np.asarray(obs, np.float32)
        self.hist = np.repeat(obs[:, None], self.history, axis=1)  # (N, L, obs_dim)
        self._prompts, self._task_ids = prompts, task_ids

    def act(self, idx: np.ndarray) -> np.ndarray:
        """First actions of the plans for environments `idx`, (n, act_dim)."""
        plan = self.planner.plan(
            self.hist[idx], prompt=None if self._prompts is None else self._prompts[idx],
            task_ids=None if self._task_ids is None else self._task_ids[idx],
            target_return=self.target_return, diffusion=self.diffusion,
            generator=self.generator)  # (n, H, act_dim)
        return plan[:, 0]

    def observe(self, idx: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        """Shift the new states into the histories of environments `idx`."""
        self.hist[idx] = np.concatenate(
            [self.hist[idx, 1:], np.asarray(obs, np.float32)[:, None]], axis=1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        diffusion: DiffusionConfig | None = None,
                        target_return: float | None = None,
                        generator: torch.Generator | None = None) -> PlannerPolicy:
        """The policy of an MTDiff-P / -P-onehot checkpoint (EMA weights)."""
        return cls(load_planner(path, device=device), diffusion=diffusion,
                   target_return=target_return, generator=generator)


def load_policy(path: str | Path, *, device: str | torch.device = "cpu",
                diffusion: DiffusionConfig | None = None, target_return: float | None = None,
                generator: torch.Generator | None = None) -> Policy:
    """The policy of the method that trained the checkpoint at `path` (`mtdiff.methods`).

    `diffusion` and `target_return` are the planners' sampling settings (other methods
    take what applies to them: a return-conditioned one the target return, on its
    checkpoint's return scale; None = that scale's natural target).
    """
    method = Checkpoint.find(path).method
    if method.role != "planner":
        raise ValueError(f"{path} holds a {method.label} checkpoint, which does not act in "
                         "an environment; give a planner's checkpoint (e.g. MTDiff-P)")
    factory = method.load("policy")
    factory = getattr(factory, "from_checkpoint", factory)
    return factory(path, device=device, diffusion=diffusion, target_return=target_return,
                   generator=generator)
