"""The end-to-end smoke run through the real entry point, with a real MLflow store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["collect-maze2d", "collect-metaworld", "train-maze2d-mtdiff-p",
          "train-metaworld-mtdiff-p", "train-metaworld-mtdiff-p-onehot", "train-metaworld-mtdiff-s",
          "evaluate-maze2d", "evaluate-metaworld", "evaluate-metaworld-onehot",
          "synthesize-offline", "report"]
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
    offline = _check_offline_outputs(tmp_path / "run")
    # As if killed after training: the evaluation outputs are gone; collection and
    # training must not run again, evaluation must. As if killed inside synthesize-offline:
    # not marked done and one TD3-BC result missing; only that one run is redone.
    shutil.rmtree(tmp_path / "run" / "eval")
    (offline / "done.json").unlink()
    redo = offline / "runs" / "reach-v3" / "rad-s0.json"
    redo.unlink()
    kept = {p: p.stat().st_mtime_ns for p in [*offline.glob("runs/*/*.json"),
                                              *offline.glob("*/*/manifest.json"),
                                              *offline.glob("single/*/*/manifest.json"),
                                              *offline.glob("quality/*.json")]}
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in STAGES:
        want = "done" if stage.startswith(("evaluate", "synth", "report")) else "skipped (done)"
        assert f"{stage}: {want} in" in second.stdout, second.stdout
    assert "[offline] TD3-BC: 1 run(s) to do, 8 finished earlier" in second.stdout
    assert redo.exists() and all(p.stat().st_mtime_ns == t for p, t in kept.items())
    _check_offline_outputs(tmp_path / "run")
    report = json.loads(next((tmp_path / "run" / "eval").glob("maze2d-*/eval-maze2d.json"))
                        .read_text())
    assert {"train", "unseen", "unseen_wrong_prompt"} <= set(report["summary"])
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "59.53" in md  # the paper's Table 1 number beside ours
    assert re.search(r"\| box-close-v3 \| unseen \| 23\.46 ± 7\.11 \| \d+\.\d\d ± ", md), md
    assert "| MTDiff-S | 0.0174 |" in md and "_not run_: no data-quality" not in md
    assert "fig6_single_task.png" in md and "_not run_: no single-task" not in md

    # Done for this config: the stage is skipped, reading back what it wrote.
    from mtdiff.config import get_preset
    from mtdiff.synth.offline_stage import run as synthesize_offline

    marker = json.loads((offline / "done.json").read_text())
    again = synthesize_offline(get_preset("smoke"), checkpoint=marker["checkpoint"],
                               data=next((tmp_path / "run" / "data").glob("metaworld-*")),
                               out=tmp_path / "run")
    assert again.skipped and again.root == offline and again.metrics == marker["metrics"]

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
            if c.data.tags["stage"] == "synthesize-offline":
                assert {"success_original", "success_mtdiff-s", "success_mtdiff-s-single",
                        "dynamics_error_rad",
                        "l2_distance_s4rl", "td3bc/reach-v3/s4rl/s0/success_rate",
                        "quality/box-close-v3/mtdiff-s/dynamics_error"} <= set(c.data.metrics)


def _check_offline_outputs(run: Path) -> Path:
    """Tables 2, 4 and Fig. 6 written through the report contracts; returns the stage's
    folder."""
    from mtdiff.data.reader import read_manifest
    from mtdiff.report.contracts import METHODS, SINGLE_METHODS, read_records

    table2 = read_records("table2", run)
    assert sorted((r["task"], r["method"], r["seed"]) for r in table2) == sorted(
        (t, m, 0) for t in ("reach-v3", "box-close-v3") for m in METHODS)
    assert {r["task"]: r["seen"] for r in table2} == {"reach-v3": True, "box-close-v3": False}
    quality = read_records("quality", run)
    assert sorted((r["task"], r["method"]) for r in quality) == sorted(
        (t, m) for t in ("reach-v3", "box-close-v3") for m in ("mtdiff-s", "rad", "s4rl"))
    [offline] = run.glob("offline/synth-*")
    assert len(list(offline.glob("plots/embedding-*.png"))) == 2
    # Fig. 6: MTDiff-S-single of reach-v3, trained on a one-task subset of the data
    fig6 = read_records("single_task", run)
    assert sorted((r["task"], r["method"]) for r in fig6) == sorted(
        ("reach-v3", m) for m in SINGLE_METHODS)
    [single] = run.glob("data/metaworld-single-reach-v3-*")
    assert list(read_manifest(single)["tasks"]) == ["reach-v3"]
    assert (offline / "single" / "synthetic" / "reach-v3" / "manifest.json").exists()
    return offline
