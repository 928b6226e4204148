"""The end-to-end smoke run through the real entry point, with a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def test_full_repro_smoke_runs_and_resumes(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
           "--out", str(tmp_path / "run")]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "collect-maze2d: done" in first.stdout and "collect-metaworld: done" in first.stdout
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipped (done)") == 2

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mtdiff")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "full_repro"]
    assert len(parents) == 2
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(c.data.tags["stage"] for c in children) == ["collect-maze2d",
                                                                   "collect-metaworld"]
        for c in children:
            assert c.data.params["preset"] == "smoke" and "dataset_hash" in c.data.tags
            assert c.data.metrics["transitions"] > 0
