"""The end-to-end smoke run through the real entry point, with a real MLflow store: the
whole job graph on a local Ray, then a rerun that redoes exactly what was removed."""

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
pytestmark = pytest.mark.integration


def _plan(env: dict, out: Path) -> list[dict]:
    r = subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset",
                        "smoke", "--out", str(out), "--plan", "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.mark.timeout(3600)
def test_full_repro_smoke_runs_and_resumes(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "run"
    plan = _plan(env, out)
    assert all(j["state"] == "pending" for j in plan)
    names = [j["name"] for j in plan]
    assert len(names) == len(set(names))
    cmd = [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
           "--out", str(out)]
    # One job fails for good (its dependents: none), one fails once and is retried.
    broken, flaky = "offline/reach-v3/rad/s0", "evaluate/maze2d/mtdiff-p/s1"
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1500,
                           env={**env, "MTDIFF_TEST_FAIL_JOB": f"{broken},{flaky}:1"})
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    n = len(names)
    assert f"{n} jobs: {n - 1} done, 0 skipped (done earlier), 1 failed" in first.stdout, \
        first.stdout[-3000:]
    log = out / "logs" / "offline__reach-v3__rad__s0.log"
    assert f"FAILED: {broken}: RuntimeError: injected failure" in first.stdout
    assert f"(log: {log})" in first.stdout and "injected failure" in log.read_text()
    assert (out / "logs" / "evaluate__maze2d__mtdiff-p__s1.injected").read_text() == "2"
    states = {j["name"]: j["state"] for j in _plan(env, out)}
    assert states[broken] == "pending" and states[flaky] == "done"
    assert all(s == "done" for k, s in states.items() if k not in (broken, "report"))
    graph = json.loads((out / "graph.json").read_text())
    assert [j["name"] for j in graph["jobs"]] == names
    assert all(j["node"] for j in graph["jobs"] if j["name"] != broken)

    # As if killed after training: the evaluation outputs are gone. The rerun does exactly
    # the evaluations, the failed job and the report; everything else is skipped and
    # nothing else is rewritten.
    shutil.rmtree(out / "eval")
    kept = {p: p.stat().st_mtime_ns for p in [*out.glob("train/*/*/checkpoint_*/checkpoint.pt"),
                                              *out.glob("offline/td3bc/*/*/result.json"),
                                              *out.glob("data/*/manifest.json")]}
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1500)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    evals = [x for x in names if x.startswith("evaluate/")]
    rerun = len(evals) + 2  # + the failed RAD run + the report
    assert f"{n} jobs: {rerun} done, {n - rerun} skipped" in second.stdout, second.stdout[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    _check_offline_outputs(out)
    maze = json.loads(next(out.glob("eval/maze2d-*/eval-maze2d.json")).read_text())
    assert {"train", "unseen", "unseen_wrong_prompt"} <= set(maze["summary"])
    md = (out / "report" / "report.md").read_text()
    # the paper's Table 1 number beside ours: mean ± std [95% CI] over the 2 smoke seeds
    assert re.search(r"\| MTDiff-P \| 59\.53 ± 1\.12 \| \d+\.\d\d ± \d+\.\d\d \[\d+\.\d\d, "
                     r"\d+\.\d\d\] \| 2 seeds, \d+ ep; CI: seeds \|", md), md
    assert re.search(r"\| box-close-v3 \| unseen \| 23\.46 ± 7\.11 \| \d+\.\d\d ± ", md), md
    assert "| MTDiff-S | 0.0174 |" in md and "_not run_: no data-quality" not in md
    assert "fig6_single_task.png" in md and "_not run_: no single-task" not in md
    assert "![](maze2d_paths.png)" in md and "- problem:" not in md
    results = json.loads((out / "report" / "results.json").read_text())
    [p1] = [c for c in results["cells"] if c["table"] == "table1" and c["method"] == "mtdiff-p"
            and c["view"] == "near-optimal"]
    assert p1["seeds"] == [0, 1] and p1["ci_over"] == "seeds" and p1["paper_mean"] == 59.53
    assert p1["ci_low"] <= p1["mean"] <= p1["ci_high"] and p1["episodes"] > 0
    # reference rows beside the methods: the zero action and uniform random policies on
    # the methods' episodes, the dataset's own success
    assert re.search(r"\| zero action \| – \| \d+\.\d\d ± \d+\.\d\d \[", md), md
    assert re.search(r"\| dataset \(mean\) \| – \| \d+\.\d\d \| dataset, \d+ ep", md), md
    ref = results["reference"]
    assert {"metaworld", "maze2d"} <= set(ref) and {"train", "unseen"} <= set(ref["maze2d"])
    assert ref["maze2d"]["unseen"]["uniform random"]["success"]["episodes"] > 0

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mtdiff")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    failed = sorted((r.data.tags["job"], r.info.status) for r in runs
                    if r.info.status != "FINISHED" and r.data.tags.get("job"))
    # the broken job's two tries and the flaky job's first one; nothing left RUNNING
    assert failed == sorted([(broken, "FAILED")] * 2 + [(flaky, "FAILED")]), failed
    assert sorted((r.data.tags.get("stage"), r.info.status) for r in runs
                  if r.data.tags.get("stage") == "full_repro") == [
        ("full_repro", "FAILED"), ("full_repro", "FINISHED")]
    parents = [r for r in runs if r.data.tags.get("stage") == "full_repro"]
    assert len(parents) == 2 and len({p.info.run_name for p in parents}) == 2
    first_parent = min(parents, key=lambda r: r.info.start_time)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") ==
                first_parent.info.run_id and r.data.tags.get("job")
                and r.info.status == "FINISHED"]
    assert sorted(c.data.tags["job"] for c in children) == sorted(set(names) - {broken})
    trains = [c for c in children if c.data.tags["stage"] == "train"]
    assert {(c.data.params["model.kind"], c.data.params["train.seed"]) for c in trains} >= {
        ("mtdiff-p", "0"), ("mtdiff-p", "1"), ("mtdiff-p-onehot", "1"), ("mtdiff-s", "0")}
    assert len({c.data.tags["config_hash"] for c in trains}) == len(trains)
    for c in trains:
        assert c.data.tags["ray_node_id"] and c.data.tags["code_version"] != "unknown"
        assert len(client.get_metric_history(c.info.run_id, "loss")) >= 2  # a curve
        assert client.get_run(c.info.run_id).inputs.dataset_inputs  # the dataset as input
    for c in children:
        if c.data.tags["stage"] == "evaluate":
            assert "success_mean" in c.data.metrics
            arts = {a.path for a in client.list_artifacts(c.info.run_id)}
            assert {"success-per-task.png", "success_per_task.json"} <= arts


def _check_offline_outputs(run: Path) -> Path:
    """Tables 2, 4 and Fig. 6 written through the report contracts; returns the offline
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
    assert len(list(run.glob("offline/quality/*/embedding-*.png"))) == 2
    # Fig. 6: MTDiff-S-single of reach-v3, trained on a one-task subset of the data
    fig6 = read_records("single_task", run)
    assert sorted((r["task"], r["method"]) for r in fig6) == sorted(
        ("reach-v3", m) for m in SINGLE_METHODS)
    [single] = run.glob("data/metaworld-single-reach-v3-*")
    assert list(read_manifest(single)["tasks"]) == ["reach-v3"]
    return run / "offline"


@pytest.mark.integration
def test_a_graph_without_mlflow_writes_no_store(tmp_path):
    """--no-mlflow: no stage of the graph opens a run of its own in a default store (an
    mlflow.db in the working directory, which several jobs creating it at once race on)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
           "--no-mlflow", "--out", str(tmp_path / "run"), "--set", "experiment.suites=maze2d",
           "--set", "experiment.methods=mtdiff-p", "--set", "experiment.seeds=0"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "5 jobs: 5 done" in r.stdout, r.stdout[-2000:]
    assert not list(tmp_path.glob("mlflow.db")) and not (tmp_path / "mlruns").exists()
