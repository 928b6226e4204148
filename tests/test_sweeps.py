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
        deadline = time.time() + 90
        while True:
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
