"""The end-to-end smoke run through the real entry point, with a real MLflow store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["collect-maze2d", "collect-metaworld", "train-maze2d-mtdiff-p",
          "train-metaworld-mtdiff-p", "train-metaworld-mtdiff-p-onehot", "train-metaworld-mtdiff-s",
          "evaluate-maze2d", "evaluate-metaworld", "evaluate-metaworld-onehot", "report"]
pytestmark = pytest.mark.integration


def test_full_repro_smoke_runs_and_resumes(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
           "--out", str(tmp_path / "run")]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in STAGES:
        assert f"{stage}: done" in first.stdout, first.stdout
    # As if killed after training: the evaluation outputs are gone; collection and
    # training must not run again, evaluation must.
    shutil.rmtree(tmp_path / "run" / "eval")
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in STAGES:
        want = "done" if stage.startswith(("evaluate", "report")) else "skipped (done)"
        assert f"{stage}: {want} in" in second.stdout, second.stdout
    report = json.loads(next((tmp_path / "run" / "eval").glob("maze2d-*/eval-maze2d.json"))
                        .read_text())
    assert {"train", "unseen", "unseen_wrong_prompt"} <= set(report["summary"])
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "59.53" in md  # the paper's Table 1 number beside ours

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mtdiff")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "full_repro"]
    assert len(parents) == 2
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(c.data.tags["stage"] for c in children) == sorted(STAGES)
        for c in children:
            assert c.data.params["preset"] == "smoke"
            if c.data.tags["stage"].startswith("collect"):
                assert "dataset_hash" in c.data.tags and c.data.metrics["transitions"] > 0
