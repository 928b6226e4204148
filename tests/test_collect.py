"""Collection on a real local Ray instance, through the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtdiff import keys
from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
from mtdiff.data.writer import INDEX, TaskIndex
from tests.killing import kill_group, pause_env, wait_for_pause

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_maze2d_smoke_collection_cli(tmp_path):
    out = tmp_path / "maze"
    r = _cli(str(REPO / "pipelines/collect.py"), "--suite", "maze2d", "--preset", "smoke",
             "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = get_preset("smoke")
    man = read_manifest(out)
    assert man["config_hash"] == cfg.collection_hash("maze2d")
    assert list(man["tasks"]) == list(cfg.maze2d.train_maps)
    for entry in man["tasks"].values():
        assert entry["transitions"] == cfg.maze2d.episodes_per_map * cfg.maze2d.episode_steps
        assert entry["episodes"] == cfg.maze2d.episodes_per_map
    # Prompts for the training maps and for the unseen map.
    assert set(man["prompt_tasks"]) == {*cfg.maze2d.train_maps, *cfg.maze2d.unseen_maps}
    v = _cli(str(REPO / "pipelines/dataset.py"), "validate", str(out), cwd=tmp_path)
    assert v.returncode == 0 and "valid" in v.stdout, v.stdout + v.stderr
    ds = load_dataset(out)
    t = ds.tasks["train-0"]
    assert t.observations.shape[1] == 4 and t.actions.shape[1] == 2
    assert np.abs(t.actions).max() <= 1.0
    assert t.truncated.sum() == cfg.maze2d.episodes_per_map  # one cut per episode
    # The same command again finds the dataset complete.
    again = _cli(str(REPO / "pipelines/collect.py"), "--suite", "maze2d", "--preset", "smoke",
                 "--out", str(out), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # Another configuration into the same folder is refused.
    other = _cli(str(REPO / "pipelines/collect.py"), "--suite", "maze2d", "--preset", "smoke",
                 "--set", "maze2d.episodes_per_map=5", "--out", str(out), cwd=tmp_path)
    assert other.returncode == 2 and "another configuration" in other.stderr


def test_killed_collection_resumes_exactly(tmp_path):
    """Kill the driver (and so its Ray workers) after 2 committed shards, with the third
    one's rows generated but not committed; rerun; compare with a clean run: identical
    rows, none lost, none twice."""
    args = ["--suite", "maze2d", "--preset", "smoke", "--no-progress",
            "--set", "maze2d.train_maps=train-0", "--set", "maze2d.episodes_per_map=40",
            "--set", "collect.shard_rows=400"]
    killed = tmp_path / "killed"
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, str(REPO / "pipelines/collect.py"), *args,
                             "--out", str(killed)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=pause_env("shards", 2, flag))
    wait_for_pause(proc, flag)
    kill_group(proc)
    partial = TaskIndex.load(killed / "data" / "train-0" / INDEX)
    assert len(partial.shards) == 2 and 800 <= partial.rows < 8000 and not partial.done
    r = _cli(str(REPO / "pipelines/collect.py"), *args, "--out", str(killed), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    clean = tmp_path / "clean"
    r = _cli(str(REPO / "pipelines/collect.py"), *args, "--out", str(clean), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_dataset(killed).tasks["train-0"], load_dataset(clean).tasks["train-0"]
    assert len(a) == len(b) == 40 * 200
    pairs = set(zip(a.episode.tolist(), a.step.tolist(), strict=True))
    assert len(pairs) == len(a)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert validate_dataset(killed) == []


def test_metaworld_scripted_collection(tmp_path):
    from mtdiff.artifacts import Inputs
    from mtdiff.collect import run

    cfg = apply_overrides(get_preset("smoke"), ["metaworld.transitions_per_task=400"])
    out = run(cfg, Inputs(suite="metaworld"), tmp_path / "mw").path
    man = read_manifest(out)
    assert sorted(man["tasks"]) == ["push-v3", "reach-v3"]
    assert all(t["transitions"] == 400 and t["episodes"] == 4 for t in man["tasks"].values())
    # Held-out tasks get prompts too (for evaluation / synthesis on unseen tasks).
    assert "box-close-v3" in man["prompt_tasks"]
    ds = load_dataset(out)
    assert ds.obs_dim == 39 and ds.act_dim == 4
    assert validate_dataset(out) == []
    reach = ds.tasks["reach-v3"]
    assert reach.success.any()  # the expert solves reach even with noise
    assert np.isfinite(reach.observations).all() and reach.rewards.dtype == np.float32
    assert keys.OBSERVATION in ds.stats
