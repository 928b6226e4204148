"""The Arrow schema of a transition shard, and conversions episode dict <-> table <-> arrays.

One row per transition (``keys.TRANSITION_COLUMNS``). Vector columns are fixed-size lists
so the width is part of the schema and a dimension mismatch is caught on read.

An *episode dict* is what environments and collectors produce: numpy arrays keyed by
``keys.OBSERVATION`` (T, obs_dim) float32, ``keys.ACTION`` (T, act_dim) float32,
``keys.REWARD`` (T,) float32 and ``keys.TERMINATED`` / ``keys.TRUNCATED`` /
``keys.SUCCESS`` (T,) bool.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from mtdiff import keys

FORMAT_VERSION = 1
EPISODE_ARRAY_KEYS = (
    keys.OBSERVATION, keys.ACTION, keys.REWARD, keys.TERMINATED, keys.TRUNCATED, keys.SUCCESS,
)


# Views of a dataset (paper App. G): near-optimal = all of a task's episodes, sub-optimal =
# its first half, in collection order (the early part of a learning agent's buffer).
VIEWS: tuple[str, ...] = ("near-optimal", "sub-optimal")
SUB_OPTIMAL_FRACTION = 0.5


def view_episodes(n_episodes: int, view: str) -> int:
    """How many of a task's first episodes a view keeps (at least one)."""
    if view == "sub-optimal":
        return max(1, math.floor(n_episodes * SUB_OPTIMAL_FRACTION))
    return n_episodes


class DatasetError(ValueError):
    """A dataset on disk (or an episode handed to a writer) is invalid.

    The message names the file or task, the problem, and what to do about it.
    """


def transition_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The schema of a transition shard for the given widths."""
    return pa.schema(
        [
            pa.field(keys.TASK, pa.string(), nullable=False),
            pa.field(keys.EPISODE, pa.int64(), nullable=False),
            pa.field(keys.STEP, pa.int32(), nullable=False),
            pa.field(keys.OBSERVATION, pa.list_(pa.float32(), obs_dim), nullable=False),
            pa.field(keys.ACTION, pa.list_(pa.float32(), act_dim), nullable=False),
            pa.field(keys.REWARD, pa.float32(), nullable=False),
            pa.field(keys.TERMINATED, pa.bool_(), nullable=False),
            pa.field(keys.TRUNCATED, pa.bool_(), nullable=False),
            pa.field(keys.SUCCESS, pa.bool_(), nullable=False),
        ],
        metadata={"mtdiff.format": str(FORMAT_VERSION)},
    )


def prompt_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The schema of a prompt set: J-step (s, a) windows of expert demonstrations."""
    return pa.schema(
        [
            pa.field(keys.TASK, pa.string(), nullable=False),
            pa.field(keys.PROMPT_ID, pa.int32(), nullable=False),
            pa.field(keys.STEP, pa.int32(), nullable=False),
            pa.field(keys.OBSERVATION, pa.list_(pa.float32(), obs_dim), nullable=False),
            pa.field(keys.ACTION, pa.list_(pa.float32(), act_dim), nullable=False),
        ],
        metadata={"mtdiff.format": str(FORMAT_VERSION)},
    )


def check_episode(ep: dict[str, np.ndarray], obs_dim: int, act_dim: int, where: str) -> int:
    """Validate one episode dict; returns its length T. Raises DatasetError naming `where`."""
    missing = [k for k in EPISODE_ARRAY_KEYS if k not in ep]
    if missing:
        raise DatasetError(f"{where}: episode is missing {missing}; an episode dict needs "
                           f"{list(EPISODE_ARRAY_KEYS)}")
    obs, act = np.asarray(ep[keys.OBSERVATION]), np.asarray(ep[keys.ACTION])
    T = len(obs)
    if T == 0:
        raise DatasetError(f"{where}: empty episode")
    if obs.shape != (T, obs_dim):
        raise DatasetError(f"{where}: observation has shape {obs.shape}, expected ({T}, {obs_dim}) "
                           "- the dataset's obs_dim; collect each suite into its own dataset")
    if act.shape != (T, act_dim):
        raise DatasetError(f"{where}: action has shape {act.shape}, expected ({T}, {act_dim})")
    for k in (keys.REWARD, keys.TERMINATED, keys.TRUNCATED, keys.SUCCESS):
        if np.shape(ep[k]) != (T,):
            raise DatasetError(f"{where}: {k} has shape {np.shape(ep[k])}, expected ({T},)")
    for k in (keys.OBSERVATION, keys.ACTION, keys.REWARD):
        if not np.isfinite(ep[k]).all():
            raise DatasetError(f"{where}: {k} contains NaN or inf; fix the collector "
                               "(a diverged agent or a broken environment)")
    return T


def episodes_to_table(
    task: str, episodes: list[tuple[int, dict[str, np.ndarray]]], obs_dim: int, act_dim: int,
    first_steps: list[int] | None = None,
) -> pa.Table:
    """Rows for ``[(episode_id, episode dict), ...]`` of one task.

    `first_steps[i]` is the step index of episode i's first row (non-zero when an episode
    continues from an earlier shard, as with transitions streamed from a replay buffer).
    """
    schema = transition_schema(obs_dim, act_dim)
    if not episodes:
        return schema.empty_table()
    lens = [check_episode(ep, obs_dim, act_dim, f"task {task!r} episode {eid}")
            for eid, ep in episodes]
    n = sum(lens)
    starts = first_steps or [0] * len(episodes)
    ep_ids = np.repeat(np.array([e for e, _ in episodes], dtype=np.int64), lens)
    steps = np.concatenate([np.arange(s, s + t, dtype=np.int32) for s, t in zip(starts, lens,
                                                                                  strict=True)])

    def cat(k: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(ep[k], dtype=dtype) for _, ep in episodes])

    obs = cat(keys.OBSERVATION, np.float32).reshape(-1)
    act = cat(keys.ACTION, np.float32).reshape(-1)
    cols = {
        keys.TASK: pa.array([task] * n, pa.string()),
        keys.EPISODE: pa.array(ep_ids),
        keys.STEP: pa.array(steps),
        keys.OBSERVATION: pa.FixedSizeListArray.from_arrays(pa.array(obs), obs_dim),
        keys.ACTION: pa.FixedSizeListArray.from_arrays(pa.array(act), act_dim),
        keys.REWARD: pa.array(cat(keys.REWARD, np.float32)),
        keys.TERMINATED: pa.array(cat(keys.TERMINATED, bool)),
        keys.TRUNCATED: pa.array(cat(keys.TRUNCATED, bool)),
        keys.SUCCESS: pa.array(cat(keys.SUCCESS, bool)),
    }
    return pa.Table.from_pydict(cols, schema=schema)


def vector_column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-size-list column as a (rows, width) float32 array (zero-copy where possible)."""
    col = table.column(name).combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def table_to_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """A transition table as numpy arrays keyed by column name."""
    out: dict[str, np.ndarray] = {
        keys.OBSERVATION: vector_column(table, keys.OBSERVATION),
        keys.ACTION: vector_column(table, keys.ACTION),
    }
    for k in (keys.EPISODE, keys.STEP, keys.REWARD, keys.TERMINATED, keys.TRUNCATED,
              keys.SUCCESS):
        out[k] = table.column(k).to_numpy()
    return out
