"""MLflow as the place to answer "which run won, and how did it learn": the experiment opens
on its runs, a reproduction's parent run carries its headline cells as metrics and its
report as one page, evaluation runs carry their intervals, job runs sample system
metrics, SAC curves reach MLflow while SAC trains.

Every test runs against a real SQLite store in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtdiff import tracking
from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.jobs import Job
from mtdiff.report import build_report, log_report_to_mlflow
from mtdiff.report.headline import headline_metrics, metric_name
from mtdiff.report.html import render_html
from mtdiff.tracking import remote, ui


def _cfg(tmp_path: Path, *sets: str):
    return apply_overrides(get_preset("smoke"),
                           [f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", *sets])


def _client(cfg):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=cfg.tracking.resolved_uri())


def _kind(cfg) -> str | None:
    exp = _client(cfg).get_experiment_by_name(cfg.tracking.experiment)
    return exp.tags.get(ui.EXPERIMENT_KIND_TAG)


# --- the experiment opens on its runs ------------------------------------------------------
def test_experiment_is_marked_for_model_training(tmp_path):
    cfg = _cfg(tmp_path)
    tracking.setup(cfg)
    assert _kind(cfg) == "custom_model_development"  # the UI's "Machine learning"
    tracking.setup(cfg)  # idempotent
    assert _kind(cfg) == "custom_model_development"
    client = _client(cfg)
    exp_id = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    client.set_experiment_tag(exp_id, ui.EXPERIMENT_KIND_TAG, "genai_development_inferred")
    tracking.setup(cfg)  # a kind the UI only guessed is replaced
    assert _kind(cfg) == "custom_model_development"
    client.set_experiment_tag(exp_id, ui.EXPERIMENT_KIND_TAG, "genai_development")
    tracking.setup(cfg)  # a kind a person chose stays
    assert _kind(cfg) == "genai_development"


def test_a_job_run_marks_an_experiment_it_did_not_create(tmp_path):
    import mlflow

    cfg = _cfg(tmp_path, "tracking.experiment=made-elsewhere")
    mlflow.set_tracking_uri(cfg.tracking.resolved_uri())
    exp_id = mlflow.create_experiment("made-elsewhere")
    parent = _client(cfg).create_run(exp_id).info.run_id
    spec = {"uri": cfg.tracking.resolved_uri(), "experiment_id": exp_id, "parent_id": parent,
            "output": str(tmp_path)}
    with tracking.job_run(spec, cfg, name="report", stage="report", sections=("experiment",)):
        pass
    assert _kind(cfg) == "custom_model_development"


def _parent_elsewhere(cfg, out: Path) -> dict[str, str]:
    """A reproduction's parent run as the driver, another process, holds it: the spec
    `start_parent` returns."""
    tracking.setup(cfg)
    exp = _client(cfg).get_experiment_by_name(cfg.tracking.experiment).experiment_id
    parent = _client(cfg).create_run(exp, run_name="full_repro-smoke").info.run_id
    return {"uri": cfg.tracking.resolved_uri(), "experiment_id": exp, "parent_id": parent,
            "output": str(out)}


# --- system metrics -------------------------------------------------------------------------
def test_job_and_parent_runs_sample_system_metrics(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    cfg = _cfg(tmp_path)
    spec = tracking.start_parent(cfg, name="repro", output=tmp_path / "out")
    time.sleep(1.0)
    tracking.end_parent(True)
    with tracking.job_run(_parent_elsewhere(cfg, tmp_path), cfg, name="train/x",
                          stage="train", sections=("train",)) as job:
        time.sleep(1.0)
    for run_id in (job.info.run_id, spec["parent_id"]):
        metrics = _client(cfg).get_run(run_id).data.metrics
        assert "system/cpu_utilization_percentage" in metrics
        assert "system/system_memory_usage_megabytes" in metrics


# --- headline cells on the parent run -------------------------------------------------------
def test_metric_names_are_what_mlflow_accepts():
    assert metric_name("table1", "CARE [53] (online)", "near-optimal") == \
        "table1/CARE _53_ _online/near-optimal"
    assert metric_name("table2", "a/b", "x:y") == "table2/a_b/x:y"


def test_headline_metrics_from_a_hand_made_results_file():
    cell = {"view": None, "tasks": None, "group": None, "std": 1.0, "n": 2}
    results = {"cells": [
        {**cell, "table": "table1", "method": "mtdiff-p", "view": "near-optimal",
         "group": "train", "mean": 60.0, "ci_low": 50.0, "ci_high": 70.0},
        {**cell, "table": "table1", "method": "dataset", "view": "sub-optimal",
         "group": "train", "mean": 20.0, "ci_low": None, "ci_high": None},  # one value
        {**cell, "table": "table1", "method": None, "label": "CARE [53] (online)",
         "view": "near-optimal", "mean": None},  # the paper's baseline: nothing of ours
        {**cell, "table": "table1", "method": "mtbc", "view": "near-optimal", "mean": None},
        {**cell, "table": "table5", "method": "promptdt", "tasks": "ant-dir",
         "group": "heldout", "mean": 400.0, "ci_low": 390.0, "ci_high": 410.0},
        {**cell, "table": "table2", "method": "original", "tasks": "reach-v3",
         "mean": 30.0, "ci_low": 10.0, "ci_high": 50.0},
        {**cell, "table": "table2", "method": "mtdiff-s", "tasks": "reach-v3",
         "mean": 70.0, "ci_low": 60.0, "ci_high": 80.0},
        {**cell, "table": "table2", "method": "rad", "tasks": "box-close-v3",
         "mean": 5.0, "ci_low": 0.0, "ci_high": 10.0},  # no Original on this task
        {**cell, "table": "table3", "method": "mtdiff-p", "mean": 1.0},
    ]}
    assert headline_metrics(results) == {
        "table1/mtdiff-p/near-optimal/mean": 60.0,
        "table1/mtdiff-p/near-optimal/ci_low": 50.0,
        "table1/mtdiff-p/near-optimal/ci_high": 70.0,
        "table1/dataset/sub-optimal/mean": 20.0,
        "table5/promptdt/ant-dir/heldout/mean": 400.0,
        "table5/promptdt/ant-dir/heldout/ci_low": 390.0,
        "table5/promptdt/ant-dir/heldout/ci_high": 410.0,
        "table2/original/reach-v3/mean": 30.0,
        "table2/original/reach-v3/ci_low": 10.0,
        "table2/original/reach-v3/ci_high": 50.0,
        "table2/mtdiff-s/reach-v3/mean": 70.0,
        "table2/mtdiff-s/reach-v3/ci_low": 60.0,
        "table2/mtdiff-s/reach-v3/ci_high": 80.0,
        "table2/mtdiff-s/reach-v3/gain": 40.0,
        "table2/rad/box-close-v3/mean": 5.0,
        "table2/rad/box-close-v3/ci_low": 0.0,
        "table2/rad/box-close-v3/ci_high": 10.0,
    }


def test_report_job_puts_headline_cells_and_page_on_the_parent_run(run, tmp_path):
    """The graph's report job (`mtdiff.report.stage.run`) inside its job run, under a
    reproduction's parent run, as the driver and runner open them."""
    from mtdiff.experiment.execute import job_inputs
    from mtdiff.report.stage import run as report

    cfg = _cfg(tmp_path)
    names = [j["name"] for j in json.loads((run / "graph.json").read_text())["jobs"]][:-1]
    job = Job("report", "report", cfg, {}, deps=names, always=True,
              params={"root": str(run), "graph": names})
    spec = _parent_elsewhere(cfg, run)
    with tracking.job_run(spec, cfg, name="report", stage="report",
                          sections=("experiment",)) as job_run:
        res = report(cfg, *job_inputs(job, {})).to_record()
    client = _client(cfg)
    parent = client.get_run(spec["parent_id"]).data.metrics
    # The fixture's cells (tests/report_graph.py): MTDiff-P near-optimal over 2 seeds,
    # 50.00 ± 17.68 [-108.83, 208.83]; Cheetah-vel training tasks -30 / -28; Table 2
    # box-close-v3: Original 2 / 10 and 4 / 10 -> 30 %, MTDiff-S 6 / 10 and 8 / 10 -> 70 %.
    assert parent["table1/mtdiff-p/near-optimal/mean"] == pytest.approx(50.0)
    assert parent["table1/mtdiff-p/near-optimal/ci_low"] == pytest.approx(-108.83, abs=0.01)
    assert parent["table1/mtdiff-p/near-optimal/ci_high"] == pytest.approx(208.83, abs=0.01)
    assert parent["table5/mtdiff-p/cheetah-vel/train/mean"] == pytest.approx(-29.0)
    assert parent["table2/mtdiff-s/box-close-v3/mean"] == pytest.approx(70.0)
    assert parent["table2/mtdiff-s/box-close-v3/gain"] == pytest.approx(40.0)
    results = json.loads(Path(res["results"]).read_text())
    assert {k: v for k, v in parent.items() if k.startswith("table")} == pytest.approx(
        headline_metrics(results))
    arts = {a.path for a in client.list_artifacts(spec["parent_id"], "report")}
    assert {"report/report.html", "report/results.json"} <= arts
    # the job's own run keeps the report folder, not the headline metrics
    own = client.get_run(job_run.info.run_id).data.metrics
    assert not any(k.startswith("table1/") for k in own)
    assert "report/report.html" in {a.path for a in client.list_artifacts(
        job_run.info.run_id, "report")}


def test_a_report_logged_on_its_own_carries_the_headline_cells(run, tmp_path):
    """`pipelines/report.py --mlflow`: no parent, the report's own run holds them."""
    import mlflow

    rep = build_report(run, preset="local")
    assert remote.parent_run_id() is None
    cfg = _cfg(tmp_path)
    tracking.setup(cfg)
    with tracking.run(cfg, "report", name="report-local") as active:
        assert log_report_to_mlflow(rep)
    metrics = mlflow.MlflowClient().get_run(active.info.run_id).data.metrics
    assert metrics["table1/mtdiff-p/near-optimal/mean"] == pytest.approx(50.0)


# --- report.html ----------------------------------------------------------------------------
def test_report_html_is_one_self_contained_page(run):
    path = build_report(run, preset="local")
    page = (path.parent / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('src="data:image/png;base64,') >= 3  # Fig. 5, paths, profiles, ...
    assert 'src="fig5_maze2d.png"' not in page and ".png\"" not in page
    assert "<h2>Table 1: multi-task planning, MT50-rand (§5.2)</h2>" in page
    assert "<td>MTDiff-P</td>" in page and "50.00 ± 17.68 [-108.83, 208.83]" in page
    assert "<table>" in page and "<th>Method</th>" in page


def test_html_escapes_raw_html_and_leaves_remote_images(tmp_path):
    page = render_html("# t\n\n<script>x</script>\n\n![](https://x.org/a.png) ![](gone.png)",
                       tmp_path)
    assert "<script>" not in page
    assert 'src="https://x.org/a.png"' in page and 'src="gone.png"' in page


# --- evaluation runs carry their intervals --------------------------------------------------
def test_episode_intervals_over_one_seeds_episodes():
    from mtdiff.eval.bootstrap import episode_intervals

    sure = [{"task": "a", "success": [1, 1, 1], "returns": [2.0, 2.0, 2.0]},
            {"task": "b", "success": [1, 1], "returns": [4.0, 4.0]}]
    assert episode_intervals(sure) == {"success_ci_low": 1.0, "success_ci_high": 1.0,
                                       "return_ci_low": 3.0, "return_ci_high": 3.0}
    rng = np.random.default_rng(0)
    half = [{"task": "a", "success": (rng.random(400) < 0.5).tolist(), "returns": [0.0] * 400}]
    got = episode_intervals(half)
    assert got["success_ci_low"] < 0.5 < got["success_ci_high"]
    assert got["success_ci_high"] - got["success_ci_low"] < 0.11  # ~ 2 x 1.96 sqrt(.25 / 400)
    no_success = [{"task": "a", "success": None, "returns": [1.0, 3.0]}]
    assert set(episode_intervals(no_success)) == {"return_ci_low", "return_ci_high"}


@pytest.mark.integration
@pytest.mark.slow
def test_evaluation_run_carries_its_intervals(maze_checkpoint, tmp_path):
    """The evaluation stage (real Ray, Maze2D) logs each group's interval bounds."""
    from dataclasses import replace

    from mtdiff.artifacts import Checkpoint, Inputs
    from mtdiff.eval.stage import run as evaluate

    ckpt, cfg = maze_checkpoint
    cfg = apply_overrides(cfg, [f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"])
    ecfg = replace(cfg.eval, episodes=2, seeds=(0, 1), max_steps=4, state_use_windows=0)
    summary = evaluate(replace(cfg, eval=ecfg), Inputs(model=Checkpoint.find(ckpt),
                                                       wrong_prompt=False),
                       tmp_path / "eval").summary
    client = _client(cfg)
    (r,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment)
                               .experiment_id])
    m = r.data.metrics
    for prefix in ("", "train_", "unseen_"):
        lo, hi = m[f"{prefix}success_ci_low"], m[f"{prefix}success_ci_high"]
        assert 0.0 <= lo <= m[f"{prefix}success_mean"] <= hi <= 1.0
        assert m[f"{prefix}return_ci_low"] <= m[f"{prefix}return_ci_high"]
    assert summary["all"]["success_ci_low"] == m["success_ci_low"]


# --- SAC curves while SAC trains ------------------------------------------------------------
@pytest.mark.integration
def test_sac_curve_reaches_mlflow_while_it_trains(tmp_path):
    """The lean SAC loop, under a collect job's run handed to it as `collect.pipeline`
    hands it to its Ray tasks: each evaluation point is in MLflow when it is measured,
    and the after-the-fact logging skips the task instead of making a second run."""
    from mtdiff.collect import sac
    from mtdiff.collect.sac_run import log_sac_runs

    cfg = _cfg(tmp_path, "metaworld.source=sac", "metaworld.tasks=reach-v3",
               "metaworld.transitions_per_task=300", "metaworld.episode_steps=100",
               "sac.eval_every=100", "sac.eval_episodes=1", "sac.learning_starts=100",
               "collect.shard_rows=100")
    tracking.setup(cfg)
    seen: list[int] = []  # steps in MLflow each time the loop evaluates
    measured = sac.curve_metrics

    def spy(point: dict[str, float], suite: str) -> dict[str, float]:
        if spec is not None:
            client = _client(cfg)
            kids = client.search_runs([spec["experiment_id"]],
                                      f"tags.mlflow.parentRunId = '{spec['run_id']}'")
            seen.append(len(client.get_metric_history(kids[0].info.run_id, "eval_return"))
                        if kids else 0)
        return measured(point, suite)

    spec = None
    with tracking.run(cfg, "collect-metaworld", name="collect") as parent:
        spec = remote.active_spec()
        sac.curve_metrics = spy
        try:
            with remote.live_parent(spec):
                sac.collect_task_lean("reach-v3", cfg, str(tmp_path / "mw"), seed=0)
        finally:
            sac.curve_metrics = measured
        log_sac_runs(cfg, tmp_path / "mw")
    assert seen == [0, 1, 2]  # before each new point, the earlier ones were there
    client = _client(cfg)
    (child,) = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert child.info.run_name == "sac-reach-v3" and child.info.status == "FINISHED"
    assert child.data.tags["task"] == "reach-v3" and child.data.tags["live"] == "true"
    hist = client.get_metric_history(child.info.run_id, "eval_success")
    assert [m.step for m in hist] == [100, 200, 300]
    assert {"eval_return", "steps_per_s", "q_loss", "final_eval_success"} <= set(
        child.data.metrics)


def test_runs_page_link_opens_model_training():
    assert ui.runs_page_url("http://10.0.0.1:5000/", "7") == \
        "http://10.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    assert ui.runs_page_url("sqlite:///mlflow.db", "7") is None
