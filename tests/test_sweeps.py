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
    assert float(rows["ddim-4"][3].rstrip("x")) > 1.5  # 4 steps instead of 20
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    children = [c for c in runs if c.data.tags.get("stage") == "sweep-trial"]
    assert sorted((c.data.params["diffusion.sampler"], c.data.params["diffusion.sample_steps"])
                  for c in children) == [("ddim", "4"), ("ddpm", "20")]
    assert all({"success", "plan_s_per_env_step"} <= set(c.data.metrics) for c in children)


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
        server.wait(timeout=30)


def _children(uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id])
    return [c for c in runs if c.data.tags.get("stage") == "sweep-trial"]


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
