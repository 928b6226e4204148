"""`pipelines/dataset.py`: info, validate (exit codes), Minari export, D4RL import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mtdiff.data.reader import load_dataset, read_manifest

REPO = Path(__file__).resolve().parents[1]


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pipelines/dataset.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_info_and_validate(write_dataset):
    root = write_dataset(tasks=("a", "b"))
    r = _tool("info", str(root))
    assert r.returncode == 0 and "2 tasks, 240 transitions" in r.stdout
    assert _tool("validate", str(root)).returncode == 0
    shard = root / read_manifest(root)["tasks"]["b"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:100])
    r = _tool("validate", str(root))
    assert r.returncode == 1
    assert "PROBLEM" in r.stdout and "truncated" in r.stdout and "'b'" in r.stdout


def test_validate_missing_folder_exits_nonzero(tmp_path):
    r = _tool("validate", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "does not exist" in r.stdout


def test_export_minari_opens_with_minari(write_dataset, tmp_path):
    import minari

    root = write_dataset(tasks=("a",), episodes=3, T=10)
    out = tmp_path / "minari"
    r = _tool("export-minari", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    from mtdiff.data.interop import load_minari, minari_id

    ds = load_minari(out, minari_id("random", "a", "near-optimal"))
    assert isinstance(ds, minari.MinariDataset)
    assert ds.total_episodes == 3 and ds.total_steps == 30
    ep = next(iter(ds.iterate_episodes()))
    ours = load_dataset(root).tasks["a"]
    np.testing.assert_allclose(ep.actions, ours.actions[:10])
    np.testing.assert_allclose(ep.observations[:10], ours.observations[:10])


def test_subset_has_the_tasks_own_statistics_and_validates(write_dataset, tmp_path):
    from mtdiff.data.prompts import load_prompts
    from mtdiff.data.subset import PARTIAL, write_subset

    root = write_dataset(tasks=("a", "b", "c"))
    out = tmp_path / "sub"
    r = _tool("subset", str(root), "--tasks", "b", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert _tool("validate", str(out)).returncode == 0
    sub, full = load_dataset(out), load_dataset(root)
    assert sub.task_names == ["b"] and list(load_prompts(out)) == ["b"]
    np.testing.assert_array_equal(sub.tasks["b"].observations, full.tasks["b"].observations)
    # statistics are the subset's own, not the pooled ones of the three tasks
    mean = read_manifest(out)["stats"]["observation"]["mean"]
    np.testing.assert_allclose(mean, full.tasks["b"].observations.mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(mean, read_manifest(root)["stats"]["observation"]["mean"])
    # the same call again returns the finished subset; other tasks into it are refused
    assert write_subset(root, out, ["b"]) == out and not (out / PARTIAL).exists()
    r = _tool("subset", str(root), "--tasks", "a", "--out", str(out))
    assert r.returncode == 2 and "already holds another dataset" in r.stderr
    r = _tool("subset", str(root), "--tasks", "push-v3", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown task 'push-v3'" in r.stderr
    # a folder left by a killed call is started over
    killed = tmp_path / "killed"
    (killed / "data" / "a").mkdir(parents=True)
    (killed / PARTIAL).touch()
    assert load_dataset(write_subset(root, killed, ["a", "c"])).task_names == ["a", "c"]


def _d4rl_file(path: Path, n: int = 500, nan: bool = False, drop: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    data = {"observations": rng.normal(size=(n, 4)), "actions": rng.uniform(-1, 1, (n, 2)),
            "rewards": rng.random(n), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    data["terminals"][99] = True
    data["timeouts"][299] = True
    if nan:
        data["observations"][5, 1] = np.nan
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if k != drop:
                f[k] = v
    return path


def test_import_d4rl(tmp_path):
    src = _d4rl_file(tmp_path / "maze.hdf5")
    out = tmp_path / "imported"
    r = _tool("import-d4rl", str(src), "--task", "umaze", "--out", str(out), "--prompt-len", "5")
    assert r.returncode == 0, r.stderr
    ds = load_dataset(out)
    t = ds.tasks["umaze"]
    assert len(t) == 500 and t.num_episodes == 3  # cut after the terminal and the timeout
    assert t.terminated[99] and t.truncated[299] and t.truncated[-1]
    with h5py.File(src) as f:
        np.testing.assert_allclose(t.observations, f["observations"][()], rtol=1e-6)
    assert _tool("validate", str(out)).returncode == 0


@pytest.mark.parametrize("kind, match", [("nan", "contains NaN"),
                                         ("drop", r"missing \['timeouts'\]")])
def test_import_d4rl_bad_files(tmp_path, kind, match):
    src = _d4rl_file(tmp_path / "bad.hdf5", nan=kind == "nan",
                     drop="timeouts" if kind == "drop" else None)
    r = _tool("import-d4rl", str(src), "--task", "x", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    import re

    assert re.search(match, r.stderr), r.stderr
