"""Reading and validating a dataset, and its views (near-optimal / sub-optimal).

Every read checks what it reads: the manifest, that each shard exists and has the size
recorded when it was written (a truncated copy fails here), that Parquet can read it,
its schema and widths, its row count, NaN/inf, and that rows run in order (episode ids
increasing, steps 0, 1, 2, ... within an episode, no (episode, step) twice). Errors name
the file and the problem, and say what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtdiff import keys
from mtdiff.data.prompts import load_prompts
from mtdiff.data.schema import (
    FORMAT_VERSION,
    VIEWS,
    DatasetError,
    table_to_arrays,
    transition_schema,
    view_episodes,
)
from mtdiff.data.writer import MANIFEST, file_sha256, view_stats

View = Literal["near-optimal", "sub-optimal"]


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a complete dataset, or a DatasetError saying why there is none."""
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; collect one with "
                           "`python pipelines/collect.py --suite ... --out DIR`")
    if not path.exists():
        raise DatasetError(f"{path} is missing: the dataset is incomplete (a collection still "
                           "running or killed); rerun the same collect command to finish it")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); rerun the collection") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format {manifest.get('format')!r}, this mtdiff reads "
                           f"format {FORMAT_VERSION}; re-collect or convert the dataset")
    for k in ("suite", "tasks", "stats"):
        if k not in manifest:
            raise DatasetError(f"{path}: manifest has no {k!r} entry; it is damaged, rerun "
                               "the collection or `dataset.py` import")
    return manifest


# Datasets already verified in this process, by the (file, size, mtime) of every shard:
# full_repro trains four models on two datasets, each check reads every byte.
_verified: set[tuple[Any, ...]] = set()


def verify_checksums(root: str | Path) -> None:
    """Check every shard the manifest lists against its recorded size and SHA-256; raise a
    DatasetError naming the first damaged file. Cheap to call again (remembered per
    process while the files are unchanged).

    Call it before Ray work that reads the shards: damaged bytes otherwise surface inside
    the workers as a misleading decode error or NaN, once per restarted worker.
    """
    root = Path(root)
    manifest = read_manifest(root)
    shards = [(task, s) for task, e in manifest["tasks"].items() for s in e["shards"]]
    stamp: list[Any] = [str(root.resolve())]
    for task, shard in shards:
        path = root / shard["file"]
        if not path.exists():
            raise DatasetError(f"{path}: shard listed in the manifest is missing; the dataset "
                               f"was copied incompletely - copy it again or re-collect task "
                               f"{task!r}")
        st = path.stat()
        stamp.append((shard["file"], st.st_size, st.st_mtime_ns))
    key = tuple(stamp)
    if key in _verified:
        return
    for task, shard in shards:
        path = root / shard["file"]
        size = path.stat().st_size
        if "bytes" in shard and size != shard["bytes"]:
            raise DatasetError(f"{path}: {size} bytes on disk, {shard['bytes']} when written - "
                               "the file is truncated or was modified; restore it from a copy "
                               f"or re-collect task {task!r}")
        if "sha256" in shard and file_sha256(path) != shard["sha256"]:
            raise DatasetError(f"{path}: checksum mismatch (its SHA-256 differs from the one "
                               "recorded when it was written) - the file is damaged; restore it "
                               f"from a copy or re-collect task {task!r}")
    _verified.add(key)


def _check_order(path: Path, episode: np.ndarray, step: np.ndarray,
                 prev: tuple[int, int] | None) -> tuple[int, int]:
    """Rows must continue (episode, step) order from `prev`; returns the last pair."""
    if prev is not None:
        episode = np.r_[prev[0], episode]
        step = np.r_[prev[1], step]
    new_ep = episode[1:] != episode[:-1]
    ok_new = new_ep & (episode[1:] > episode[:-1]) & (step[1:] == 0)
    ok_same = ~new_ep & (step[1:] == step[:-1] + 1)
    bad = np.flatnonzero(~(ok_new | ok_same))
    if prev is None and len(step) and step[0] != 0:
        # A task's first rows may continue no episode: they must start at step 0.
        raise DatasetError(f"{path}: first row is episode {episode[0]} step {step[0]}, expected "
                           "step 0; the shard list is incomplete - rerun the collection")
    if len(bad):
        i = int(bad[0])
        raise DatasetError(
            f"{path}: row order broken at (episode {episode[i]}, step {step[i]}) -> (episode "
            f"{episode[i + 1]}, step {step[i + 1]}): rows missing or written twice; delete the "
            "task's folder and collect it again")
    return int(episode[-1]), int(step[-1])


def read_shard(root: Path, task: str, shard: dict[str, Any], obs_dim: int, act_dim: int,
               *, checksum: bool = False) -> dict[str, np.ndarray]:
    """Read one shard, checking size, readability, schema, rows, task column and NaN/inf."""
    path = root / shard["file"]
    if not path.exists():
        raise DatasetError(f"{path}: shard listed in the manifest is missing; the dataset was "
                           "copied incompletely - copy it again or re-collect task " + repr(task))
    size = path.stat().st_size
    if "bytes" in shard and size != shard["bytes"]:
        raise DatasetError(f"{path}: {size} bytes on disk, {shard['bytes']} when written - the "
                           "shard is truncated or was modified; copy it again or re-collect "
                           f"task {task!r}")
    if checksum and "sha256" in shard and file_sha256(path) != shard["sha256"]:
        raise DatasetError(f"{path}: checksum differs from the one recorded when written - the "
                           f"shard is corrupt; copy it again or re-collect task {task!r}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"{path}: not a readable Parquet file ({e}); the shard is corrupt "
                           f"or truncated - re-collect task {task!r}") from None
    expected = transition_schema(obs_dim, act_dim)
    if not table.schema.equals(expected, check_metadata=False):
        diffs = []
        for f in expected:
            got = table.schema.field(f.name).type if f.name in table.schema.names else "missing"
            if got != f.type:
                diffs.append(f"{f.name}: {got} (expected {f.type})")
        raise DatasetError(f"{path}: schema does not match the dataset's (obs_dim={obs_dim}, "
                           f"act_dim={act_dim}): {'; '.join(diffs) or 'field order'}; this shard "
                           "belongs to another dataset or suite")
    if table.num_rows != shard["rows"]:
        raise DatasetError(f"{path}: {table.num_rows} rows, the manifest says {shard['rows']}")
    names = pc.unique(table.column(keys.TASK)).to_pylist()
    if names != [task] and table.num_rows:
        raise DatasetError(f"{path}: rows belong to tasks {names}, expected only {task!r}")
    arrays = table_to_arrays(table)
    for col in (keys.OBSERVATION, keys.ACTION, keys.REWARD):
        finite = np.isfinite(arrays[col])
        if not finite.all():
            row = int(np.flatnonzero(~finite.reshape(len(finite), -1).all(-1))[0])
            raise DatasetError(f"{path}: column {col!r} contains NaN or inf (first in row {row}); "
                               "the collector diverged or the file is damaged (`python "
                               f"pipelines/dataset.py validate {root}` checks checksums) - "
                               f"re-collect task {task!r}")
    return arrays


@dataclass
class TaskData:
    """One task's transitions in memory, rows in (episode, step) order."""

    name: str
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    success: np.ndarray  # (N,) bool
    episode: np.ndarray  # (N,) int64
    step: np.ndarray  # (N,) int32

    @property
    def episode_starts(self) -> np.ndarray:
        """(E,) row index where each episode starts."""
        return np.flatnonzero(np.r_[True, self.episode[1:] != self.episode[:-1]])

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return len(self.episode_starts)

    def __len__(self) -> int:
        return len(self.rewards)

    def view(self, view: str) -> TaskData:
        """The task's rows in a view: all of them, or the sub-optimal view's first episodes."""
        starts = self.episode_starts
        keep = view_episodes(len(starts), view)
        end = int(starts[keep]) if keep < len(starts) else len(self)
        return TaskData(self.name, *(getattr(self, f)[:end] for f in (
            "observations", "actions", "rewards", "terminated", "truncated", "success",
            "episode", "step")))


@dataclass
class OfflineDataset:
    """A validated dataset in memory: manifest, view, tasks in manifest order."""

    root: Path
    manifest: dict[str, Any]
    view: str
    tasks: dict[str, TaskData]

    @property
    def suite(self) -> str:
        """'metaworld', 'maze2d' or what an import declared."""
        return str(self.manifest["suite"])

    @property
    def task_names(self) -> list[str]:
        """Tasks in this dataset (or in the selected subset)."""
        return list(self.tasks)

    @property
    def obs_dim(self) -> int:
        """Observation width (one per dataset)."""
        return int(next(iter(self.manifest["tasks"].values()))["obs_dim"])

    @property
    def act_dim(self) -> int:
        """Action width (one per dataset)."""
        return int(next(iter(self.manifest["tasks"].values()))["act_dim"])

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Normalisation statistics pooled over all tasks (mean/std/min/max per dim)."""
        return {k: {s: np.asarray(v, dtype=np.float32) for s, v in d.items()}
                for k, d in self.manifest["stats"].items()}


def check_tasks(requested: list[str], available: list[str], what: str = "this dataset") -> None:
    """Raise a DatasetError naming unknown task names and listing the known ones."""
    unknown = [t for t in requested if t not in available]
    if unknown:
        import difflib

        hints = {t: difflib.get_close_matches(t, available, n=1) for t in unknown}
        hint = "; ".join(f"{t!r} (did you mean {h[0]!r}?)" if h else repr(t)
                         for t, h in hints.items())
        raise DatasetError(f"unknown task {hint} in {what}; it has: {', '.join(available)}")


def load_dataset(root: str | Path, *, view: View = "near-optimal", tasks: list[str] | None = None,
                 checksum: bool = False) -> OfflineDataset:
    """Load (and validate while loading) a dataset, or raise DatasetError naming the problem."""
    root = Path(root)
    if view not in VIEWS:
        raise DatasetError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
    manifest = read_manifest(root)
    available = list(manifest["tasks"])
    selected = tasks if tasks is not None else available
    check_tasks(selected, available, str(root))
    out: dict[str, TaskData] = {}
    for task in selected:
        entry = manifest["tasks"][task]
        obs_dim, act_dim = int(entry["obs_dim"]), int(entry["act_dim"])
        parts: list[dict[str, np.ndarray]] = []
        prev = None
        for shard in entry["shards"]:
            arrays = read_shard(root, task, shard, obs_dim, act_dim, checksum=checksum)
            if len(arrays[keys.STEP]):
                prev = _check_order(root / shard["file"], arrays[keys.EPISODE],
                                    arrays[keys.STEP], prev)
            parts.append(arrays)
        if not parts or sum(len(p[keys.STEP]) for p in parts) == 0:
            raise DatasetError(f"task {task!r} in {root} has no transitions; re-collect it")

        def cat(k: str, parts: list[dict[str, np.ndarray]] = parts) -> np.ndarray:
            return np.concatenate([p[k] for p in parts])

        data = TaskData(task, cat(keys.OBSERVATION), cat(keys.ACTION), cat(keys.REWARD),
                        cat(keys.TERMINATED), cat(keys.TRUNCATED), cat(keys.SUCCESS),
                        cat(keys.EPISODE), cat(keys.STEP))
        out[task] = data.view(view)
    return OfflineDataset(root, manifest, view, out)


def task_view_stats(data: TaskData) -> dict[str, dict[str, float]]:
    """Per view (near-optimal / sub-optimal): episodes, mean return, success rate of a task
    loaded whole (what `finalize_dataset` records in the manifest as ``views``)."""
    starts = data.episode_starts
    ret = np.add.reduceat(data.rewards.astype(np.float64), starts) if len(data) else []
    succ = np.maximum.reduceat(data.success, starts) if len(data) else []
    return view_stats([float(r) for r in ret], [bool(x) for x in succ])


def view_summary(root: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """task -> view -> {episodes, mean_return, success_rate}: from the manifest, or computed
    from the data for a dataset finalised before the manifest recorded them."""
    manifest = read_manifest(root)
    out = {}
    for task, entry in manifest["tasks"].items():
        out[task] = entry.get("views") or task_view_stats(
            load_dataset(root, tasks=[task]).tasks[task])
    return out


def validate_dataset(root: str | Path, *, checksum: bool = True) -> list[str]:
    """Every problem found in a dataset, as messages (empty list = valid)."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except DatasetError as e:
        return [str(e)]
    problems: list[str] = []
    dims = {(e["obs_dim"], e["act_dim"]) for e in manifest["tasks"].values()}
    if len(dims) > 1:
        problems.append(f"{root}: tasks have different widths {sorted(dims)}")
    for task, entry in manifest["tasks"].items():
        try:
            data = load_dataset(root, tasks=[task], checksum=checksum).tasks[task]
        except DatasetError as e:
            problems.append(str(e))
            continue
        recorded = entry.get("views")
        if recorded is not None:
            found = task_view_stats(data)
            bad = [v for v in found if not np.isclose(
                found[v]["mean_return"], recorded.get(v, {}).get("mean_return", np.nan),
                rtol=1e-5, atol=1e-6) or found[v]["episodes"] != recorded[v]["episodes"]]
            if bad:
                problems.append(f"{root}: task {task!r}: the manifest's statistics of views "
                                f"{bad} do not match the data; re-finalise the dataset")
    if manifest.get("prompts"):
        try:
            prompts = load_prompts(root)
            missing = [t for t in manifest["tasks"] if t not in prompts]
            if missing:
                problems.append(f"{root}: no prompts for tasks {missing}; rerun the collection")
            for t, w in prompts.items():
                if w.shape[-1] != next(iter(dims))[0] + next(iter(dims))[1]:
                    problems.append(f"{root}: prompts of {t!r} have width {w.shape[-1]}, "
                                    f"expected obs_dim+act_dim={sum(next(iter(dims)))}")
        except DatasetError as e:
            problems.append(str(e))
    return problems
