"""Transition arrays (s, a, r, s', done): what TD3-BC trains on and augmentations return.

A dataset stores rows in (episode, step) order, so s' of row i is row i+1's observation
within the same episode. The last row of an episode has no recorded s': it is dropped,
unless it is terminal (then s' is never used, because the target is masked by done).
Meta-World never terminates, so there every episode loses its last (time-limit) row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mtdiff import keys
from mtdiff.data.reader import OfflineDataset, TaskData, load_dataset


@dataclass
class Transitions:
    """N transitions as numpy arrays (float32 unless noted).

    observations      (N, obs_dim)  s
    actions           (N, act_dim)  a
    rewards           (N,)          r
    next_observations (N, obs_dim)  s'
    terminals         (N,)          1.0 where s' is terminal (no bootstrap), else 0.0
    rows              (N,) int64    source row in the task's arrays (-1: not from a dataset);
                                    augmentations keep it, so metrics that need a row's
                                    hidden simulator state can find it
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    rows: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.observations)
        for f in fields(self):
            v = getattr(self, f.name)
            if len(v) != n:
                raise ValueError(f"Transitions.{f.name} has {len(v)} rows, observations {n}")
        if self.next_observations.shape != self.observations.shape:
            raise ValueError(f"next_observations {self.next_observations.shape} != "
                             f"observations {self.observations.shape}")

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        """Observation width."""
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action width."""
        return int(self.actions.shape[1])

    @classmethod
    def from_arrays(cls, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    next_observations: np.ndarray, terminals: np.ndarray | None = None,
                    rows: np.ndarray | None = None) -> Transitions:
        """Transitions from arbitrary arrays (e.g. synthetic data), cast to float32."""
        n = len(observations)
        return cls(
            np.asarray(observations, np.float32), np.asarray(actions, np.float32),
            np.asarray(rewards, np.float32).reshape(n),
            np.asarray(next_observations, np.float32),
            np.zeros(n, np.float32) if terminals is None
            else np.asarray(terminals, np.float32).reshape(n),
            np.full(n, -1, np.int64) if rows is None else np.asarray(rows, np.int64))

    def subset(self, index: np.ndarray | slice) -> Transitions:
        """The transitions at `index` (a copy for fancy indexes, a view for slices)."""
        return Transitions(*(getattr(self, f.name)[index] for f in fields(self)))

    def transition_matrix(self) -> np.ndarray:
        """(N, 2*obs_dim + act_dim + 1) float32 rows [s, a, r, s'] (for distances, plots)."""
        return np.concatenate([self.observations, self.actions, self.rewards[:, None],
                               self.next_observations], axis=1)


def from_task(task: TaskData) -> Transitions:
    """A task's transitions: s' = the next row's observation in the same episode.

    An episode's last row is kept only when it is terminal (its s' is then a copy of s
    and never read); a truncated or unfinished last row has no s' and is dropped.
    """
    same_episode = np.r_[task.episode[1:] == task.episode[:-1], False]  # (N,) row i+1 follows
    keep = same_episode | task.terminated
    idx = np.flatnonzero(keep)
    nxt = np.where(same_episode[idx], idx + 1, idx)  # terminal last rows: s' unused
    return Transitions(
        observations=task.observations[idx].astype(np.float32, copy=False),
        actions=task.actions[idx].astype(np.float32, copy=False),
        rewards=task.rewards[idx].astype(np.float32, copy=False),
        next_observations=task.observations[nxt].astype(np.float32, copy=False),
        terminals=task.terminated[idx].astype(np.float32),
        rows=idx.astype(np.int64))


def load_task(root: str | Path, task: str, view: str) -> Transitions:
    """A task's transitions from view `view` of the dataset at `root`."""
    return from_task(load_dataset(root, view=view, tasks=[task]).tasks[task])


def from_dataset(dataset: OfflineDataset, tasks: Sequence[str] | None = None) -> Transitions:
    """Transitions of one or several tasks of a dataset, concatenated in task order.

    `rows` index each task's own arrays, so they are only meaningful per task.
    """
    names = list(tasks) if tasks is not None else dataset.task_names
    return concat([from_task(dataset.tasks[n]) for n in names])


def concat(parts: Sequence[Transitions]) -> Transitions:
    """One `Transitions` from several (e.g. original + augmented)."""
    if not parts:
        raise ValueError("concat needs at least one Transitions")
    return Transitions(*(np.concatenate([getattr(p, f.name) for p in parts])
                         for f in fields(Transitions)))


def task_data_from_episodes(name: str, episodes: Sequence[dict[str, np.ndarray]]) -> TaskData:
    """A `TaskData` from collector episode dicts (`mtdiff.keys` columns, e.g. from
    `rollout_scripted`) without a round trip through Parquet: episode ids 0, 1, ..."""
    if not episodes:
        raise ValueError("task_data_from_episodes needs at least one episode")

    def cat(k: str) -> np.ndarray:
        return np.concatenate([ep[k] for ep in episodes])

    lengths = [len(ep[keys.REWARD]) for ep in episodes]
    return TaskData(name, cat(keys.OBSERVATION), cat(keys.ACTION), cat(keys.REWARD),
                    cat(keys.TERMINATED), cat(keys.TRUNCATED), cat(keys.SUCCESS),
                    np.repeat(np.arange(len(episodes), dtype=np.int64), lengths),
                    np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]))
