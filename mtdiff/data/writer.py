"""Writing a dataset: per-task Parquet shards, a per-task index, then the manifest.

On-disk layout (`root/`)::

    manifest.json                      written last: its presence means "complete"
    prompts.parquet                    the prompt sets (few-shot expert windows per task)
    data/<task>/part-000000.parquet    transition shards, in collection order
    data/<task>/_index.json            the committed shards of that task (+ collector state)

Crash safety: a shard is written to a temporary file and renamed; only then is the task's
index rewritten (atomically) to list it. A shard on disk that the index does not list is
an orphan of a crash between the two renames and is deleted when the writer reopens, so
a resumed collection continues exactly after the last committed row: nothing lost (the
collector restarts from the index's state) and nothing written twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtdiff import keys
from mtdiff.data.io import atomic_write_json, atomic_write_parquet, remove_stale_temps
from mtdiff.data.schema import (
    FORMAT_VERSION,
    VIEWS,
    DatasetError,
    check_episode,
    episodes_to_table,
    table_to_arrays,
    view_episodes,
)
from mtdiff.layout import MANIFEST
from mtdiff.runtime import pause_for_tests

PROMPTS = "prompts.parquet"
INDEX = "_index.json"


def task_dir(root: str | Path, task: str) -> Path:
    """The folder of one task's shards."""
    if not task or "/" in task or task.startswith("."):
        raise DatasetError(f"invalid task name {task!r}: it names a folder, so it must be "
                           "non-empty, without '/' and not start with '.'")
    return Path(root) / "data" / task


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TaskIndex:
    """The committed state of one task: its shards, counts and the collector's state."""

    task: str
    obs_dim: int
    act_dim: int
    shards: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    episodes_started: int = 0  # episode ids 0..episodes_started-1 have rows on disk
    done: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # collector's resume state (JSON)

    @classmethod
    def load(cls, path: Path) -> TaskIndex:
        """Read an index file."""
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        """Write the index atomically."""
        atomic_write_json(path, self.__dict__)


class TaskWriter:
    """Appends one task's transitions as Parquet shards, resumable after a crash.

    Episodes are buffered and flushed as a shard once `shard_rows` rows are buffered (a
    shard holds whole episodes, or the pieces handed to `add_episode` with
    `first_step`). `state` passed to `add_episode`/`flush` is stored with the shard it
    belongs to, so a collector that resumes gets back exactly the state that matches the
    rows on disk.
    """

    def __init__(self, root: str | Path, task: str, obs_dim: int, act_dim: int,
                 shard_rows: int) -> None:
        self.dir = task_dir(root, task)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.task, self.obs_dim, self.act_dim, self.shard_rows = task, obs_dim, act_dim, shard_rows
        remove_stale_temps(self.dir)
        path = self.dir / INDEX
        if path.exists():
            self.index = TaskIndex.load(path)
            if (self.index.obs_dim, self.index.act_dim) != (obs_dim, act_dim):
                raise DatasetError(
                    f"{path}: existing data has dims obs={self.index.obs_dim} "
                    f"act={self.index.act_dim}, the writer was given obs={obs_dim} act={act_dim};"
                    " write to a new folder or delete the old one")
        else:  # saved at once: the folder's widths are fixed from now on
            self.index = TaskIndex(task, obs_dim, act_dim)
            self.index.save(path)
        listed = {s["file"] for s in self.index.shards}
        for p in self.dir.glob("part-*.parquet"):  # orphans of a crash (see module doc)
            if p.name not in listed:
                p.unlink()
        self._buf: list[tuple[int, dict[str, np.ndarray]]] = []
        self._first_steps: list[int] = []
        self._buf_rows = 0
        self._last: tuple[int, int] | None = None  # (episode, next step) of the last piece

    @property
    def committed_rows(self) -> int:
        """Rows safely on disk."""
        return self.index.rows

    @property
    def done(self) -> bool:
        """Whether the task was closed as complete."""
        return self.index.done

    def add_episode(self, episode_id: int, ep: dict[str, np.ndarray], first_step: int = 0,
                    state: dict[str, Any] | None = None) -> None:
        """Buffer an episode (or a piece of one starting at `first_step`)."""
        if self.index.done:
            raise DatasetError(f"task {self.task!r} is already complete; nothing more to add")
        T = check_episode(ep, self.obs_dim, self.act_dim, f"task {self.task!r} episode "
                          f"{episode_id}")
        if self._last is not None:
            last_ep, next_step = self._last
            ok = (episode_id == last_ep and first_step == next_step) or (
                episode_id > last_ep and first_step == 0)
            if not ok:
                raise DatasetError(
                    f"task {self.task!r}: episode {episode_id} step {first_step} does not follow "
                    f"episode {last_ep} step {next_step - 1}; rows must arrive in order")
        self._last = (episode_id, first_step + T)
        self._buf.append((episode_id, ep))
        self._first_steps.append(first_step)
        self._buf_rows += T
        self.index.episodes_started = max(self.index.episodes_started, episode_id + 1)
        if state is not None:
            self._pending_state = state
        if self._buf_rows >= self.shard_rows:
            self.flush()

    def flush(self, state: dict[str, Any] | None = None) -> None:
        """Write the buffered rows as one shard and commit it in the index."""
        if state is not None:
            self._pending_state = state
        if self._buf_rows == 0:
            if state is not None:
                self.index.state = state
                self.index.save(self.dir / INDEX)
            return
        # Kill tests: stop for good before committing the shard after the N-th, so the
        # kill lands mid-run with rows (and collector state) that must be redone.
        pause_for_tests("shards", len(self.index.shards))
        table = episodes_to_table(self.task, self._buf, self.obs_dim, self.act_dim,
                                  self._first_steps)
        name = f"part-{len(self.index.shards):06d}.parquet"
        path = atomic_write_parquet(self.dir / name, table)
        self.index.shards.append({"file": name, "rows": table.num_rows,
                                  "bytes": path.stat().st_size, "sha256": file_sha256(path)})
        self.index.rows += table.num_rows
        self.index.state = getattr(self, "_pending_state", self.index.state)
        self.index.save(self.dir / INDEX)
        self._buf, self._first_steps, self._buf_rows = [], [], 0

    def close(self, state: dict[str, Any] | None = None) -> TaskIndex:
        """Flush what is left and mark the task complete."""
        self.flush(state)
        self.index.done = True
        self.index.save(self.dir / INDEX)
        return self.index


def _stats_update(acc: dict[str, Any], x: np.ndarray) -> None:
    x64 = x.astype(np.float64)
    if not acc:
        acc.update(n=0, s=np.zeros(x.shape[1]), ss=np.zeros(x.shape[1]),
                   mn=np.full(x.shape[1], np.inf), mx=np.full(x.shape[1], -np.inf))
    acc["n"] += len(x)
    acc["s"] += x64.sum(0)
    acc["ss"] += (x64**2).sum(0)
    acc["mn"] = np.minimum(acc["mn"], x64.min(0))
    acc["mx"] = np.maximum(acc["mx"], x64.max(0))


def _stats_final(acc: dict[str, Any]) -> dict[str, list[float]]:
    mean = acc["s"] / acc["n"]
    var = np.maximum(acc["ss"] / acc["n"] - mean**2, 0.0)
    return {"mean": mean.tolist(), "std": np.sqrt(var).tolist(), "min": acc["mn"].tolist(),
            "max": acc["mx"].tolist()}


def view_stats(returns: list[float], success: list[bool]) -> dict[str, dict[str, float]]:
    """Per view: episodes, mean return and success rate of a task's episodes (in order)."""
    out = {}
    for view in VIEWS:
        n = view_episodes(len(returns), view) if returns else 0
        out[view] = {"episodes": n,
                     "mean_return": float(np.mean(returns[:n])) if n else 0.0,
                     "success_rate": float(np.mean(success[:n])) if n else 0.0}
    return out


def finalize_dataset(
    root: str | Path, *, suite: str, source: str, tasks: list[str], config: dict[str, Any],
    config_hash: str, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check every task is complete, compute statistics, write `manifest.json` last."""
    root = Path(root)
    task_entries: dict[str, Any] = {}
    accs: dict[str, dict[str, Any]] = {keys.OBSERVATION: {}, keys.ACTION: {}, keys.REWARD: {}}
    dims: set[tuple[int, int]] = set()
    for task in tasks:
        ipath = task_dir(root, task) / INDEX
        if not ipath.exists():
            raise DatasetError(f"task {task!r} has no data under {ipath.parent}; run the "
                               "collection for it first")
        idx = TaskIndex.load(ipath)
        if not idx.done:
            raise DatasetError(f"task {task!r} is not complete ({idx.rows} rows so far); rerun "
                               "the collection command to finish it")
        dims.add((idx.obs_dim, idx.act_dim))
        returns: dict[int, float] = {}
        succ: dict[int, bool] = {}
        for s in idx.shards:
            arr = table_to_arrays(pq.read_table(task_dir(root, task) / s["file"]))
            _stats_update(accs[keys.OBSERVATION], arr[keys.OBSERVATION])
            _stats_update(accs[keys.ACTION], arr[keys.ACTION])
            _stats_update(accs[keys.REWARD], arr[keys.REWARD][:, None])
            # Episodes are contiguous runs of rows: reduce each run at once.
            ep = arr[keys.EPISODE]
            starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
            ep_ret = np.add.reduceat(arr[keys.REWARD].astype(np.float64), starts)
            ep_succ = np.maximum.reduceat(arr[keys.SUCCESS], starts)
            for e, r, sc in zip(ep[starts].tolist(), ep_ret.tolist(), ep_succ.tolist(),
                                strict=True):
                returns[e] = returns.get(e, 0.0) + r
                succ[e] = succ.get(e, False) or bool(sc)
        task_entries[task] = {
            "obs_dim": idx.obs_dim, "act_dim": idx.act_dim, "transitions": idx.rows,
            "episodes": len(returns),
            "shards": [{**s, "file": f"data/{task}/{s['file']}"} for s in idx.shards],
            "mean_return": float(np.mean(list(returns.values()))) if returns else 0.0,
            "success_rate": float(np.mean(list(succ.values()))) if succ else 0.0,
            "views": view_stats(list(returns.values()), list(succ.values())),
        }
    if len(dims) > 1:
        raise DatasetError(f"tasks have different widths {sorted(dims)}; one dataset holds one "
                           "observation/action width (collect each suite separately)")
    manifest = {
        "format": FORMAT_VERSION,
        "suite": suite,
        "source": source,
        "config_hash": config_hash,
        "collector": config,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": task_entries,
        "stats": {k: _stats_final(v) for k, v in accs.items() if v},
        "prompts": PROMPTS if (root / PROMPTS).exists() else None,
        **(extra or {}),
    }
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
