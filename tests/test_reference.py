"""Reference rows: the zero action and a uniform random policy in the real environments,
through the evaluation's own job code, and their rows in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtdiff.config import get_preset
from mtdiff.eval.reference import (
    RANDOM,
    ZERO,
    RandomPolicy,
    ZeroPolicy,
    dataset_reference,
    reference_jobs,
    run_reference_job,
)
from mtdiff.eval.suites import EvalJob, make_envs, run_policy_job
from mtdiff.layout import Layout
from mtdiff.report import build_report
from tests.report_graph import _episodes, _graph, _line, _record, _section


def _prompts(env, task: str) -> dict[str, np.ndarray]:
    """A prompt set of the right width (the reference policies draw one and ignore it)."""
    width = env.observation_space.shape[0] + env.action_space.shape[0]
    return {task: np.zeros((4, 5, width), np.float32)}


def test_zero_action_on_cheetah_vel_scores_minus_goal_velocity_per_step():
    from mtdiff.envs.mujoco_tasks import get_suite

    spec = get_suite("cheetah-vel")
    task = "cheetah-vel-10"
    v = spec.goals[spec.index(task)]  # 0.825 m/s
    job = EvalJob("cheetah-vel", task, 0, 3, 200, stop_on_success=False)
    envs, name = make_envs(job)
    res = run_policy_job(job, ZeroPolicy(envs[0].action_space, _prompts(envs[0], task), 5),
                         get_preset("smoke"), envs, name)
    # reward -|v_x - v*| - 0.05 |a|^2: standing still, v_x ~ 0 and no control cost
    assert res["lengths"] == [200] * 3 and res["success"] is None
    np.testing.assert_allclose(res["returns"], [-v * 200] * 3, rtol=0.02)


def test_random_policy_stays_in_the_action_box_and_is_seeded():
    job = EvalJob("cheetah-vel", "cheetah-vel-3", 1, 2, 30, stop_on_success=False)
    envs, _ = make_envs(job)
    box = envs[0].action_space
    for e in envs:
        e.close()
    prompts = _prompts(envs[0], job.task)
    acts = [RandomPolicy(box, prompts, 5, seed=s).act(np.arange(64)) for s in (7, 7, 8)]
    assert acts[0].shape == (64, box.shape[0])
    assert (acts[0] >= box.low).all() and (acts[0] <= box.high).all()
    assert acts[0].std() > 0.3  # spread over [-1, 1], not a constant
    np.testing.assert_array_equal(acts[0], acts[1])
    assert not np.allclose(acts[0], acts[2])
    # whole jobs: the same seed repeats its episodes, the zero action differs from it
    cfg = get_preset("smoke")
    pol = {k: run_reference_job(job, k, "/nonexistent", cfg) for k in (RANDOM, ZERO)}
    again = run_reference_job(job, RANDOM, "/nonexistent", cfg)
    assert again["returns"] == pol[RANDOM]["returns"]
    assert pol[RANDOM]["returns"] != pol[ZERO]["returns"]


@pytest.mark.slow
def test_reference_jobs_are_the_planners_jobs_with_the_same_reset_seeds(maze_checkpoint):
    from mtdiff.artifacts import load_checkpoint
    from mtdiff.eval.stage import plan_jobs
    from mtdiff.eval.suites import run_job

    ckpt, cfg = maze_checkpoint
    meta = load_checkpoint(ckpt)["meta"]
    data = Path(meta["dataset"]["path"])
    planner_jobs = plan_jobs("maze2d", meta, cfg, cfg.eval, tasks=None, maps=None,
                             wrong_prompt=True)
    jobs = reference_jobs(data, "maze2d", cfg)
    assert jobs == [j for j in planner_jobs if j.extra["prompt"] == "own"]
    assert {j.extra["group"] for j in jobs} == {"train", "unseen"}
    job = EvalJob("maze2d", "unseen-0", 3, 3, 2, keep_paths=True,
                  extra={"group": "unseen", "prompt": "own"})
    mine = run_reference_job(job, ZERO, str(data), cfg)
    theirs = run_job(job, str(ckpt), cfg.diffusion, None, device="cpu", cfg=cfg)
    # the same start states: the same reset seeds after the same prompt draw
    assert [p[0] for p in mine["paths"]] == [p[0] for p in theirs["paths"]]
    assert len({tuple(p[0]) for p in mine["paths"]}) == 3
    ref = dataset_reference(data, "maze2d")
    assert set(ref["tasks"]) == {"train-0"}
    assert ref["tasks"]["train-0"]["near-optimal"]["episodes"] == 2


def _reference(lay: Layout, suite: str, per_policy: dict[str, list[dict]],
               dataset: dict) -> str:
    """A reference job's JSON and record, as `mtdiff.eval.reference.run` and
    `Evaluation.to_record` write them."""
    name = f"reference/{suite}"
    path = lay.out / "reference" / f"{suite}-abcd1234" / f"reference-{suite}.json"
    from mtdiff.data.io import atomic_write_json

    atomic_write_json(path, {"summary": {"suite": suite, "dataset": "/d", "eval": {
        "episodes": 4, "seeds": [0]}, "policies": {}}, "dataset": dataset,
        "episodes": per_policy})
    _record(lay, name, "reference", {"suite": suite},
            {"reference_file": str(path), "suite": suite, "outputs": [str(path)]})
    return name


def test_report_has_reference_rows(run):
    lay = Layout.at(run)
    names = json.loads(lay.graph.read_text())["jobs"]
    names = [j["name"] for j in names if j["name"] != "report"]
    F = False
    # Meta-World: zero action never succeeds (returns 2 each); random 1 of 8 episodes
    names.append(_reference(lay, "metaworld", {
        ZERO: [_episodes(t, [F] * 4, [2.0] * 4, "train") for t in ("reach-v3", "push-v3")],
        RANDOM: [_episodes("reach-v3", [True, F, F, F], [5.0] * 4, "train"),
                 _episodes("push-v3", [F] * 4, [3.0] * 4, "train")]},
        {"tasks": {t: {"near-optimal": {"episodes": 10, "mean_return": 400.0,
                                        "success_rate": s},
                       "sub-optimal": {"episodes": 5, "mean_return": 300.0,
                                       "success_rate": s / 2}}
                   for t, s in (("reach-v3", 0.9), ("push-v3", 0.7))}, "prompt_policy": {}}))
    # Cheetah-vel: standing still scores -200 v*; held-out from the SAC policy's return
    cheetah = {k: [dict(_episodes("cheetah-vel-0", [F] * 4, [r] * 4, "train"), success=None),
                   dict(_episodes("cheetah-vel-2", [F] * 4, [r - 10] * 4, "heldout"),
                        success=None)]
               for k, r in ((ZERO, -15.0), (RANDOM, -60.0))}
    names.append(_reference(lay, "cheetah-vel", cheetah, {
        "tasks": {"cheetah-vel-0": {"near-optimal": {"episodes": 3, "mean_return": -5.0,
                                                     "success_rate": None}}},
        "prompt_policy": {"cheetah-vel-2": {"return": -12.0, "step": 1000}}}))
    _graph(lay, names)
    md = build_report(run, preset="local").read_text()
    t1 = _section(md, "Table 1")
    # random: reach 25 %, push 0 % -> 12.50 over tasks; dataset (0.9 + 0.7) / 2 = 80 %
    assert _line(t1, "| zero action |").startswith("| zero action | – | 0.00 ± 0.00")
    assert "| 12.50 ± " in _line(t1, "| uniform random |")
    assert _line(t1, "| dataset (mean) |").startswith(
        "| dataset (mean) | – | 80.00 | dataset, 20 ep; no CI | – | 40.00 |")
    assert "- Table 1 vs reference, near-optimal: paper MTDiff-P > zero action" in t1
    t5 = _section(md, "Table 5")
    assert _line(t5, "| zero action |").startswith(
        "| zero action | – | -15.00 ± 0.00 [-15.00, -15.00] | -25.00 ± 0.00")
    assert _line(t5, "| dataset (mean) |").startswith("| dataset (mean) | – | -5.00 | -12.00 |")
    # MTDiff-P's -29 is below standing still's -15: the claim is reversed
    assert "**reversed**" in _line(t5, "- Table 5 vs reference, cheetah-vel, train tasks: "
                                       "paper MTDiff-P > zero action")
    per_task = _section(md, "Table 1").split("Per-task success", 1)[1]
    assert "zero action success (%)" in per_task and "dataset near-optimal success" in per_task
    res = json.loads((run / "report" / "results.json").read_text())["reference"]
    assert res["cheetah-vel"]["heldout"]["zero action"]["return"]["mean"] == -25.0
    assert res["cheetah-vel"]["heldout"]["zero action"]["success"] is None
    assert res["metaworld"]["train"]["dataset (mean), sub-optimal"]["success"]["mean"] == 40.0
    assert res["metaworld"]["train"]["uniform random"]["success"]["ci_over"] == "episodes"
