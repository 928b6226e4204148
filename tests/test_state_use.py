"""The state-use check (`mtdiff.eval.state_use`): real policies trained on datasets whose
actions are known functions of the state or of the task get the verdicts those functions
imply; every method's policy goes through it; the evaluation stage writes it into its JSON
and MLflow run, and the report shows it (or says it was not measured)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_tanh_policy_dataset
from mtdiff.data.reader import load_dataset
from mtdiff.eval.policy import load_policy
from mtdiff.eval.state_use import (
    MARGIN,
    _shuffled,
    check_checkpoint,
    context_length,
    predict,
    sample_windows,
)
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner

CPU = torch.device("cpu")
OBS, ACT = 6, 2


def _datasets(root: Path) -> dict[str, Path]:
    """"state": a = tanh(W s), one W for both tasks (the state decides, not the task);
    "task": a = tanh(b_task), W = 0 (the task decides, not the state)."""
    W = np.random.default_rng(0).normal(size=(ACT, OBS)) * 1.5 / np.sqrt(OBS)
    kw = {"episodes": 30, "episode_len": 25, "prompt_len": 5, "prompts_per_task": 8}
    return {
        "state": write_tanh_policy_dataset(root / "state", weights={"a": W, "b": W}, **kw),
        "task": write_tanh_policy_dataset(
            root / "task", weights={"a": 0 * W, "b": 0 * W},
            bias={"a": np.array([0.6, -0.5]), "b": np.array([-0.6, 0.5])}, **kw)}


def _train(kind: str, data: Path, out: Path, steps: int, *over: str) -> Path:
    """A checkpoint of `kind` after `steps` real updates on `data` (smoke sizes)."""
    cfg = apply_overrides(get_preset("smoke"), [f"model.kind={kind}", *over])
    setup = build_setup(cfg, data, batch_per_task=32)
    torch.manual_seed(0)
    learner = build_learner(cfg, setup, CPU)
    for _ in range(steps):
        learner.update(to_torch(setup.sampler.sample(), CPU))
    write_checkpoint(out, **learner.state_dict(), step=steps, meta=setup.meta)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return _datasets(tmp_path_factory.mktemp("state-use"))


def test_bc_verdicts_follow_what_decides_the_data_actions(data, tmp_path):
    """MTBC (300 steps) on actions the state decides uses the state and ignores the task;
    on actions the task decides it ignores the state, uses the task id, and is no better
    than each task's mean action (which is all there is to learn there)."""
    state = check_checkpoint(_train("mtbc", data["state"], tmp_path / "s", 300),
                             windows_per_task=32)
    assert state["verdict_state"] == "uses the state" and state["state_gap_ci"][0] > MARGIN
    assert state["verdict_prompt"] == "ignores the prompt"
    assert state["verdict_learnt"] == "better than the mean action"
    assert state["true"] < 0.2 < 1.5 < state["shuffled_history"]  # ~2: another window's action
    task = check_checkpoint(_train("mtbc", data["task"], tmp_path / "t", 300),
                            windows_per_task=32)
    assert task["verdict_state"] == "ignores the state" and task["state_gap"] < MARGIN
    assert task["verdict_prompt"] == "uses the prompt"
    assert task["verdict_learnt"] == "learnt nothing"
    assert task["true_ci"][0] <= 1.0 <= task["true_ci"][1] + 0.1
    assert set(task["per_task"]) == {"a", "b"} and task["windows"] == 64


@pytest.mark.parametrize(("kind", "context"), [
    ("mtdiff-p", 2), ("mtdiff-p-onehot", 2), ("mtiql", 1), ("mtcql", 1), ("mtdt", 4),
    ("promptdt", 4)])
def test_every_method_goes_through_the_check(data, tmp_path, kind, context):
    r = check_checkpoint(_train(kind, data["state"], tmp_path / kind, 2), windows_per_task=8)
    assert r["context"] == context and r["windows"] == 16
    for c in ("true", "shuffled_history", "wrong_prompt"):
        assert np.isfinite(r[c]) and r[f"{c}_ci"][0] <= r[c] <= r[f"{c}_ci"][1]
    assert r["verdict_state"] in ("uses the state", "ignores the state")


def test_replay_gives_the_decision_transformer_the_data_steps(data, tmp_path):
    """The DT's context after the replay holds the window's own states and actions (the
    data's, not its predictions), cut at the episode's start."""
    pol = load_policy(_train("promptdt", data["state"], tmp_path / "pdt", 1))
    ds = load_dataset(data["state"])
    w = sample_windows(ds, 6)
    own = np.arange(len(w))
    predict(pol, w, context_of=own, prompt_task=w.task, rng=np.random.default_rng(0))
    for i in own:
        td = ds.tasks[w.tasks[w.task[i]]]
        t = int(w.rows[i])
        n = min(pol.K, int(td.step[t]) + 1)
        assert pol.n[i] == n
        rows = np.arange(t - n + 1, t + 1)
        s = pol.nz.normalize("observation", td.observations[rows])
        np.testing.assert_allclose(pol.s[i, :n], s, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pol.a[i, : n - 1], np.clip(td.actions[rows[:-1]], -1, 1))


def test_windows_and_shuffles_are_seeded_and_stay_within_their_task(data):
    ds = load_dataset(data["task"])
    w1, w2 = sample_windows(ds, 16, seed=3), sample_windows(ds, 16, seed=3)
    np.testing.assert_array_equal(w1.rows, w2.rows)
    assert not np.array_equal(w1.rows, sample_windows(ds, 16, seed=4).rows)
    perm = _shuffled(w1, np.random.default_rng(0))
    assert (perm != np.arange(len(w1))).all() and (w1.task[perm] == w1.task).all()
    assert sorted(perm) == list(range(len(w1)))
    with pytest.raises(ValueError, match="state_use_windows >= 2"):
        sample_windows(ds, 1)


def test_eval_config_takes_0_or_at_least_2_windows():
    assert apply_overrides(get_preset("smoke"), ["eval.state_use_windows=0"]).eval \
        .state_use_windows == 0
    with pytest.raises(Exception, match="must be 0 .off. or at least 2"):
        apply_overrides(get_preset("smoke"), ["eval.state_use_windows=1"])
    assert context_length(object()) == 1


def test_report_shows_verdicts_and_says_when_an_evaluation_has_none(tmp_path):
    from mtdiff.layout import Layout
    from mtdiff.report import build_report
    from mtdiff.report.state_use import OLD
    from tests.report_graph import _episodes, _evaluate, _graph

    lay = Layout.at(tmp_path / "run")
    res = [_episodes("reach-v3", [True, False], [1.0, 0.0], "train")]
    names = [_evaluate(lay, "metaworld", "mtdiff-p", "near-optimal", s, res) for s in (0, 1)]
    _graph(lay, names)
    measured = next(lay.out.glob("eval/*-000000000001-*/eval-metaworld.json"))
    doc = json.loads(measured.read_text())
    doc["summary"]["state_use"] = {
        "true": 1.31, "true_ci": [1.1, 1.5], "shuffled_history": 1.33,
        "shuffled_history_ci": [1.1, 1.6], "wrong_prompt": 1.30, "wrong_prompt_ci": [1.1, 1.5],
        "state_gap": 0.02, "state_gap_ci": [-0.1, 0.1], "prompt_gap": -0.01,
        "prompt_gap_ci": [-0.1, 0.1], "uses_state": False, "uses_prompt": False,
        "learnt_nothing": True, "verdict_state": "ignores the state",
        "verdict_prompt": "ignores the prompt", "verdict_learnt": "learnt nothing"}
    measured.write_text(json.dumps(doc))
    md = build_report(lay.out, preset="local").read_text()
    assert "| metaworld | MTDiff-P | near-optimal | 1 | 1.31 [1.10, 1.50] | 1.33 [1.10, 1.60] " \
           "| 1.30 [1.10, 1.50] | ignores the state | ignores the prompt | learnt nothing |" in md
    assert f"| metaworld | MTDiff-P | near-optimal | 0 | – | – | – | {OLD} |" in md
    rows = json.loads((lay.out / "report" / "results.json").read_text())["state_use"]
    assert [(r["seed"], r.get("missing"), r.get("verdict_state")) for r in rows] == [
        (0, OLD, None), (1, None, "ignores the state")]


@pytest.mark.integration
@pytest.mark.slow
def test_evaluation_json_and_mlflow_run_hold_the_check(maze_checkpoint, tmp_path):
    """The evaluation stage at `smoke` (real Ray, Maze2D, MLflow) writes `state_use` with
    verdicts; an untrained planner ignores the state and has learnt nothing."""
    import mlflow

    from mtdiff.artifacts import Checkpoint, Inputs
    from mtdiff.eval.stage import run

    ckpt, cfg = maze_checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = apply_overrides(cfg, [f"tracking.uri={uri}"])
    ecfg = replace(cfg.eval, episodes=1, seeds=(0,), max_steps=4, state_use_windows=16)
    run(replace(cfg, eval=ecfg), Inputs(model=Checkpoint.find(ckpt), wrong_prompt=False),
        tmp_path / "eval")
    su = json.loads((tmp_path / "eval" / "eval-maze2d.json").read_text())["summary"]["state_use"]
    assert su["windows"] == 16 and su["tasks"] == ["train-0"] and su["context"] == 5
    assert su["verdict_state"] == "ignores the state" and su["wrong_prompt"] is None
    assert su["verdict_prompt"] == "n/a (one training task)"
    assert su["verdict_learnt"] == "learnt nothing"
    client = mlflow.MlflowClient(tracking_uri=uri)
    (r,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment)
                               .experiment_id])
    assert r.data.metrics["state_use/true"] == pytest.approx(su["true"])
    assert r.data.metrics["state_use/uses_state"] == 0.0
