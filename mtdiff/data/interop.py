"""Interop: export to Minari's on-disk layout, import of D4RL-style HDF5 files.

Export writes one Minari dataset per task (``mtdiff/<suite>-<task>/<view>-v0``) under a
folder that becomes ``MINARI_DATASETS_PATH``; `minari.load_dataset` then opens it.
Our rows hold s_t but not s_{t+1} of an episode's last step, while Minari stores T+1
observations per episode: the last observation is repeated there (noted in each
exported dataset's description).

Import reads D4RL's flat layout (``observations``, ``actions``, ``rewards``,
``terminals``, ``timeouts``, optionally ``infos/success``), cuts episodes after each
terminal or timeout, and writes a dataset in this project's format. Prompts are cut
from the file's highest-return episodes (there is no separate expert to ask).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff import keys
from mtdiff.data.prompts import cut_prompt_windows, write_prompts
from mtdiff.data.reader import load_dataset, read_manifest
from mtdiff.data.schema import DatasetError
from mtdiff.data.writer import MANIFEST, TaskWriter, file_sha256, finalize_dataset

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@contextmanager
def _minari_path(path: Path):  # minari reads its root from the environment
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def minari_id(suite: str, task: str, view: str) -> str:
    """The Minari dataset id of one exported task."""
    safe = task.replace("_", "-")
    return f"mtdiff/{suite}-{safe}/{view}-v0"


def export_minari(root: str | Path, out: str | Path, *, view: str = "near-optimal",
                  tasks: list[str] | None = None) -> list[str]:
    """Export each task as a Minari dataset under `out`; returns the dataset ids."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    ds = load_dataset(root, view=view, tasks=tasks)  # type: ignore[arg-type]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = []
    with _minari_path(out):
        for name, td in ds.tasks.items():
            did = minari_id(ds.suite, name, view)
            if (out / did).exists():
                raise DatasetError(f"{out / did} already exists; export to an empty folder")
            buffers = []
            starts = np.r_[td.episode_starts, len(td)]
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                obs = td.observations[a:b]
                last_cut = not td.terminated[b - 1]  # an episode ends by one flag or the other
                buffers.append(EpisodeBuffer(
                    id=len(buffers),
                    observations=np.concatenate([obs, obs[-1:]]),  # (T+1, S), see module doc
                    actions=td.actions[a:b],
                    rewards=td.rewards[a:b].astype(np.float64),
                    terminations=td.terminated[a:b],
                    truncations=np.r_[td.truncated[a:b - 1], last_cut],
                    infos={"success": td.success[a:b]},
                ))
            with warnings.catch_warnings():  # minari warns that no env spec is given: none is
                warnings.simplefilter("ignore", UserWarning)
                minari.create_dataset_from_buffers(
                    dataset_id=did,
                    buffer=buffers,
                    observation_space=gym.spaces.Box(-np.inf, np.inf, (ds.obs_dim,), np.float32),
                    action_space=gym.spaces.Box(-1.0, 1.0, (ds.act_dim,), np.float32),
                    algorithm_name=str(ds.manifest.get("source")),
                    author="mtdiff",
                    description=(f"mtdiff {ds.suite} task {name} ({view} view), exported "
                                 f"from {root}. The last observation of each episode is "
                                 "repeated as its final observation."),
                )
            ids.append(did)
    return ids


def load_minari(out: str | Path, dataset_id: str) -> Any:
    """Open an exported dataset (sets MINARI_DATASETS_PATH for the call)."""
    import minari

    with _minari_path(Path(out)):
        return minari.load_dataset(dataset_id)


def read_d4rl_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a D4RL-style HDF5 file, checked for keys, lengths and NaN/inf."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        missing = [k for k in D4RL_KEYS if k not in f]
        if missing:
            raise DatasetError(f"{path}: missing {missing}; a D4RL-style file needs "
                               f"{list(D4RL_KEYS)} at its top level")
        data = {k: f[k][()] for k in D4RL_KEYS}
        if "infos" in f and "success" in f["infos"]:
            data["success"] = f["infos"]["success"][()]
    n = len(data["observations"])
    for k, v in data.items():
        if len(v) != n:
            raise DatasetError(f"{path}: {k!r} has {len(v)} rows, observations has {n}")
    if data["observations"].ndim != 2 or data["actions"].ndim != 2:
        raise DatasetError(f"{path}: observations/actions must be 2-D (rows, dims), got "
                           f"{data['observations'].shape} and {data['actions'].shape}")
    for k in ("observations", "actions", "rewards"):
        if not np.isfinite(data[k]).all():
            raise DatasetError(f"{path}: {k!r} contains NaN or inf")
    return data


def import_d4rl(path: str | Path, out: str | Path, *, task: str, suite: str = "d4rl",
                shard_rows: int = 100_000, prompt_len: int = 20, prompt_episodes: int = 5,
                prompts_per_task: int = 50, seed: int = 0) -> Path:
    """Convert a D4RL-style HDF5 file into a dataset of this project's format at `out`."""
    out = Path(out)
    if (out / MANIFEST).exists():
        man = read_manifest(out)
        raise DatasetError(f"{out} already holds a dataset (tasks {list(man['tasks'])}); "
                           "import into a new folder")
    d = read_d4rl_hdf5(path)
    n, obs_dim, act_dim = len(d["observations"]), d["observations"].shape[1], d["actions"].shape[1]
    ends = np.flatnonzero(d["terminals"].astype(bool) | d["timeouts"].astype(bool)) + 1
    bounds = np.unique(np.r_[0, ends[ends < n], n])
    success = d.get("success", np.zeros(n, bool)).astype(bool)
    writer = TaskWriter(out, task, obs_dim, act_dim, shard_rows)
    episodes = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        ep = {
            keys.OBSERVATION: d["observations"][a:b].astype(np.float32),
            keys.ACTION: d["actions"][a:b].astype(np.float32),
            keys.REWARD: d["rewards"][a:b].astype(np.float32),
            keys.TERMINATED: d["terminals"][a:b].astype(bool),
            # A trailing piece with neither flag was cut by the file's end: truncated.
            keys.TRUNCATED: np.r_[d["timeouts"][a:b - 1].astype(bool),
                                  bool(d["timeouts"][b - 1]) or not d["terminals"][b - 1]],
            keys.SUCCESS: success[a:b],
        }
        writer.add_episode(i, ep)
        episodes.append(ep)
    writer.close()
    best = sorted(episodes, key=lambda e: -float(e[keys.REWARD].sum()))[:prompt_episodes]
    rng = np.random.default_rng(seed)
    write_prompts(out, {task: cut_prompt_windows(best, prompt_len, prompts_per_task, rng)},
                  obs_dim, act_dim)
    finalize_dataset(out, suite=suite, source="d4rl-import", tasks=[task],
                     config={"file": str(Path(path).resolve()), "task": task},
                     config_hash="import-" + file_sha256(path)[:12])
    return out
