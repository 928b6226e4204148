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


def test_smoke_sweep_sqlite_store(maze_checkpoint, tmp_path):
    ckpt, _ = maze_checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _sweep(ckpt, tmp_path, uri)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_runs(uri)


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
