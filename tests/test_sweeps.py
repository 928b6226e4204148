"""Tune sweeps: every trial an MLflow child run of the sweep's parent (sqlite and server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.killing import kill_group, wait_for_pause

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def _sweep(ckpt: Path, tmp_path: Path, uri: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "sweeps/guidance_temperature.py"), "--checkpoint",
           str(ckpt), "--suite", "maze2d", "--maps", "train-0", "--alphas", "1.0", "1.5",
           "--betas", "0.5", "1.0", "--episodes", "1", "--max-steps", "3", "--steps", "2",
           "--storage", str(tmp_path / "sweeps")]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})


def _check_runs(uri: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mtdiff")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    assert len(parents) == 1
    children = [r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 4
    grid = sorted((float(c.data.params["diffusion.guidance"]),
                   float(c.data.params["diffusion.temperature"])) for c in children)
    assert grid == [(1.0, 0.5), (1.0, 1.0), (1.5, 0.5), (1.5, 1.0)]
    assert all("success" in c.data.metrics for c in children)
    assert "best_success" in parents[0].data.metrics


def test_sampler_sweep_sqlite_store(maze_checkpoint, tmp_path):
    """Sampler settings (sampler + step count swept together) against the first one."""
    import mlflow

    ckpt, _ = maze_checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, str(REPO / "sweeps/sampler_steps.py"), "--checkpoint", str(ckpt),
           "--suite", "maze2d", "--maps", "train-0", "--settings", "ddpm-20", "ddim-4",
           "--episodes", "2", "--max-steps", "3", "--storage", str(tmp_path / "sweeps")]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.startswith(("ddpm-20", "ddim-4"))}
    assert set(rows) == {"ddpm-20", "ddim-4"}
    assert rows["ddpm-20"][3] == "1.0x"  # the baseline against itself
    assert rows["ddim-4"][3].endswith("x")  # a measured ratio (load-dependent: not asserted)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    children = [c for c in runs if c.data.tags.get("stage") == "sweep-trial"]
    assert sorted((c.data.params["diffusion.sampler"], c.data.params["diffusion.sample_steps"])
                  for c in children) == [("ddim", "4"), ("ddpm", "20")]
    assert all({"success", "plan_s_per_env_step"} <= set(c.data.metrics) for c in children)
    calls = {c.data.params["diffusion.sampler"]: c.data.metrics["network_calls_per_plan"]
             for c in children}
    assert calls == {"ddim": 4.0, "ddpm": 20.0}  # 4 steps instead of 20, counted


@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_smoke_sweep_mlflow_server(maze_checkpoint, tmp_path):
    """The cluster set-up: trials log over HTTP to an `mlflow server` process."""
    ckpt, _ = maze_checkpoint
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # the server's start-up takes minutes on loaded cores
        while True:
            assert server.poll() is None, f"mlflow server exited with {server.returncode}"
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        r = _sweep(ckpt, tmp_path, uri)
        assert r.returncode == 0, r.stderr[-3000:]
        _check_runs(uri)
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # its workers can take longer on loaded cores
            kill_group(server)


def _children(uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    return [c for c in runs if c.data.tags.get("stage") == "sweep-trial"]


@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_horizon_prompt_sweep_trains_inside_trials(maze_checkpoint, tmp_path):
    """Train V2 inside Tune: each trial's driver function builds a TorchTrainer, whose
    worker reserves its own CPU next to the trial's (else it could never be placed)."""
    data = maze_checkpoint[0].parent / "data"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, str(REPO / "sweeps/horizon_prompt.py"), "--data", str(data),
           "--suite", "maze2d", "--maps", "train-0", "--horizons", "4", "8", "--prompt-lens",
           "5", "--preset", "smoke", "--set", "train.steps=10", "--set", "eval.episodes=1",
           "--set", "eval.max_steps=3", "--out", str(tmp_path / "hp")]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert r.returncode == 0, r.stderr[-3000:]
    children = _children(uri)
    assert sorted(int(c.data.params["data.horizon"]) for c in children) == [4, 8]
    assert all("success" in c.data.metrics and c.data.tags.get("checkpoint") for c in children)
    assert len(list((tmp_path / "hp" / "train").glob("*/checkpoint_*/checkpoint.pt"))) >= 2


@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_task_count_sweep_writes_fig7_records(tmp_path):
    """Fig. 7 at smoke size: MTDiff-S on 1 and 2 tasks -> synthesize -> TD3-BC per trial."""
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, str(REPO / "sweeps/task_count.py"), "--preset", "smoke", "--sets",
           "reach-v3", "reach-v3,push-v3", "--task", "reach-v3", "--out", str(tmp_path / "tc")]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "tc" / "offline" / "task_count.json").read_text())
    assert sorted(row["num_tasks"] for row in rows) == [1, 2]
    assert all(0.0 <= row["success"] <= 1.0 and row["task"] == "reach-v3" for row in rows)
    assert sorted(c.data.params["metaworld.tasks"] for c in _children(uri)) == [
        "reach-v3", "reach-v3,push-v3"]
    bad = subprocess.run([*cmd[:5], "reach-v3", "push-v3", "--task", "push-v3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not in set(s) ['reach-v3']" in bad.stderr


# ------------------------------------------------------------------------- reliability drills


def _gt(ckpt: str | Path, storage: str | Path, *extra: str, cwd: Path, uri: str,
        env: dict[str, str] | None = None, popen: bool = False):
    """guidance_temperature.py on the smoke checkpoint: 1 episode of 3 steps per trial."""
    cmd = [sys.executable, str(REPO / "sweeps/guidance_temperature.py"), "--checkpoint",
           str(ckpt), "--suite", "maze2d", "--maps", "train-0", "--episodes", "1",
           "--max-steps", "3", "--steps", "2", "--storage", str(storage), *extra]
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **(env or {})}
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=full_env)


def _records(storage: Path) -> dict[str, float]:
    """Trial record file -> modification time."""
    return {p.name: p.stat().st_mtime_ns
            for p in (storage / "guidance-temperature" / "trials").glob("*.json")}


def test_sweep_with_relative_checkpoint_and_storage(maze_checkpoint, tmp_path):
    """A relative --checkpoint and --storage: resolved before they are stored or handed to
    trials (which run in Tune's trial folders); the records hold absolute-path results."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _gt("ckpt", "sweeps", "--alphas", "1.0", "1.5", "--betas", "0.5", cwd=tmp_path,
            uri=uri)
    assert r.returncode == 0, r.stderr[-3000:]
    children = _children(uri)
    assert len(children) == 2 and all("success" in c.data.metrics for c in children)
    assert len(_records(tmp_path / "sweeps")) == 2


@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_killed_sweep_reruns_only_unfinished_trials(maze_checkpoint, tmp_path):
    """Killed after 2 of 4 trials (the third one running): the rerun runs trials 3 and 4
    only, trial 3 in its own child run again: 4 child runs for 4 trials, all FINISHED."""
    import mlflow

    ckpt, _ = maze_checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = tmp_path / "sweeps"
    args = ["--alphas", "1.0", "1.5", "--betas", "0.5", "1.0", "--max-concurrent", "1"]
    flag = tmp_path / "paused"
    proc = _gt(ckpt, storage, *args, cwd=tmp_path, uri=uri, popen=True,
               env={"MTDIFF_TEST_PAUSE_AFTER_TRIALS": "2", "MTDIFF_TEST_PAUSED_FLAG": str(flag)})
    wait_for_pause(proc, flag, timeout=600)  # trial 3 runs, in its child run
    kill_group(proc)  # the driver, Tune and the paused trial
    before = _records(storage)
    assert len(before) == 2  # killed mid-run: exactly 2 of 4 trials finished
    killed = {c.info.run_id: c for c in _children(uri)}
    assert sorted(c.info.status for c in killed.values()) == ["FINISHED", "FINISHED", "RUNNING"]
    r = _gt(ckpt, storage, *args, cwd=tmp_path, uri=uri)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 of 4 trials already finished" in r.stdout
    after = _records(storage)
    assert len(after) == 4 and all(after[k] == v for k, v in before.items())  # not rerun
    children = _children(uri)
    assert len(children) == 4 and set(killed) <= {c.info.run_id for c in children}
    assert all(c.info.status == "FINISHED" for c in children)
    client = mlflow.MlflowClient(tracking_uri=uri)
    for c in children:  # each trial evaluated (and logged its result) exactly once
        assert len(client.get_metric_history(c.info.run_id, "success")) == 1
    grid = sorted((float(c.data.params["diffusion.guidance"]),
                   float(c.data.params["diffusion.temperature"])) for c in children)
    assert grid == [(1.0, 0.5), (1.0, 1.0), (1.5, 0.5), (1.5, 1.0)]


class _Planted:
    """A pickle that creates a file when it is unpickled (stands for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_tuner_pkl_is_refused_not_unpickled(maze_checkpoint, tmp_path):
    import pickle

    ckpt, _ = maze_checkpoint
    marker = tmp_path / "code-ran"
    folder = tmp_path / "sweeps" / "guidance-temperature"
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    pickle.loads((folder / "tuner.pkl").read_bytes())  # the plant works ...
    marker.unlink()
    r = _gt(ckpt, tmp_path / "sweeps", "--alphas", "1.0", "--betas", "0.5", cwd=tmp_path,
            uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not marker.exists()  # ... and the sweep never unpickled it
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tuner.pkl" in lines[0]


def test_sweep_whose_trials_all_fail_says_so_in_one_line(maze_checkpoint, tmp_path):
    ckpt, _ = maze_checkpoint
    # Damaged after training: the driver does not read the prompts, every trial does.
    (tmp_path / "data" / "prompts.parquet").write_bytes(b"not parquet")
    r = _gt(ckpt, tmp_path / "sweeps", "--alphas", "1.0", "1.5", "--betas", "0.5",
            cwd=tmp_path, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: all 2 trials of sweep 'guidance-temperature' failed; the "
                           "first: "), last
    assert "prompts.parquet is not a readable Parquet file" in last
    assert "Traceback" not in r.stdout.splitlines()[-1]
