"""Planner, batched rollouts and the evaluation summary (real envs, an untrained model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtdiff.eval.planner import load_planner
from mtdiff.eval.policy import PlannerPolicy, load_policy
from mtdiff.eval.rollout import rollout
from mtdiff.eval.suites import summarize


def test_planner_shapes_and_action_bounds(maze_checkpoint):
    ckpt, cfg = maze_checkpoint
    planner = load_planner(ckpt)
    rng = np.random.default_rng(0)
    prompts = planner.sample_prompts("unseen-0", 3, rng)
    assert prompts.shape == (3, cfg.data.prompt_len, 6)
    hist = np.zeros((3, planner.history, 4), np.float32)
    a = planner.plan(hist, prompt=prompts)
    assert a.shape == (3, cfg.data.horizon, 2) and np.abs(a).max() <= 1.0
    with pytest.raises(ValueError, match="needs a prompt"):
        planner.plan(hist)
    with pytest.raises(KeyError, match="no prompt set for task 'nope'"):
        planner.sample_prompts("nope", 1, rng)


def test_batched_rollout_on_real_maze_envs(maze_checkpoint):
    from mtdiff.envs.maze2d import make_env

    ckpt, cfg = maze_checkpoint
    planner = load_planner(ckpt)
    envs = [make_env("train-0", max_episode_steps=6) for _ in range(3)]
    prompts = planner.sample_prompts("train-0", 3, np.random.default_rng(1))
    res = rollout(PlannerPolicy(planner), envs, max_steps=10, prompts=prompts, seeds=[1, 2, 3],
                  keep_paths=True)
    assert res.lengths.tolist() == [6, 6, 6]  # truncated by the env's own limit
    assert res.env_steps == 18 and len(res.paths) == 3 and res.paths[0].shape == (7, 4)

    def seeded():
        policy = load_policy(ckpt, generator=torch.Generator().manual_seed(0))
        assert isinstance(policy, PlannerPolicy) and policy.conditioning == "prompt"
        return rollout(policy, [make_env("train-0", max_episode_steps=6) for _ in range(3)],
                       max_steps=10, prompts=prompts, seeds=[1, 2, 3], keep_paths=True)

    np.testing.assert_array_equal(seeded().paths[1], seeded().paths[1])  # seeded = repeatable


def test_planner_policy_keeps_the_last_states_per_environment(maze_checkpoint):
    ckpt, _ = maze_checkpoint
    policy = load_policy(ckpt)
    L = policy.history
    obs0 = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    policy.begin(obs0, prompts=policy.sample_prompts("train-0", 3, np.random.default_rng(0)),
                 task_ids=None)
    assert policy.act(np.array([0, 2])).shape == (2, 2)
    new = np.full((2, 4), -1.0, np.float32)
    policy.observe(np.array([0, 2]), new, np.zeros(2))
    np.testing.assert_array_equal(policy.hist[0, -1], new[0])  # newest state last
    np.testing.assert_array_equal(policy.hist[0, : L - 1], np.repeat(obs0[:1], L - 1, 0))
    np.testing.assert_array_equal(policy.hist[1], np.repeat(obs0[1:2], L, 0))  # untouched


def test_summary_means_over_episodes_then_seeds():
    rows = [
        {"task": "a", "seed": 0, "success": [1, 1, 0, 0], "returns": [1, 2, 3, 4], "env_steps": 4,
         "seconds": 1.0, "plan_seconds": 0.5},
        {"task": "a", "seed": 1, "success": [1, 1, 1, 1], "returns": [0, 0, 0, 0], "env_steps": 4,
         "seconds": 1.0, "plan_seconds": 0.5},
        {"task": "b", "seed": 0, "success": [0, 0, 0, 0], "returns": [0, 0, 0, 0], "env_steps": 4,
         "seconds": 1.0, "plan_seconds": 0.5},
        {"task": "b", "seed": 1, "success": [0, 0, 1, 1], "returns": [0, 0, 0, 0], "env_steps": 4,
         "seconds": 1.0, "plan_seconds": 0.5},
    ]
    s = summarize(rows)
    assert s["tasks"]["a"]["success_mean"] == pytest.approx(0.75)
    assert s["tasks"]["a"]["success_std"] == pytest.approx(0.25)
    assert s["tasks"]["a"]["return_mean"] == pytest.approx(1.25)
    # Mean over tasks per seed: seed 0 = (0.5 + 0) / 2, seed 1 = (1 + 0.5) / 2.
    assert s["success_mean"] == pytest.approx(0.5) and s["success_std"] == pytest.approx(0.25)


def test_bootstrap_intervals_over_episodes_and_seeds():
    from mtdiff.eval.bootstrap import difference_ci, outcomes_from_episodes, success_ci

    sure = {0: {"a": np.ones(30), "b": np.ones(10)}}
    ci = success_ci(sure)
    assert (ci.mean, ci.lo, ci.hi) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    half = {0: {"a": (rng.random(200) < 0.5).astype(float),
                "b": np.r_[np.ones(100), np.zeros(100)]}}
    ci = success_ci(half, n_boot=4000)
    assert ci.lo < ci.mean < ci.hi and ci.hi - ci.lo < 0.15  # ~ +-1.96 sqrt(.25 / 400)
    assert difference_ci(half, sure).resolved and difference_ci(half, sure).mean > 0.4
    assert not difference_ci(half, half).resolved
    # Several training seeds widen the interval: the seeds disagree. Over seeds it is
    # Student's t: 1, 0, 1 -> s = sqrt(1/3), se = 1/3, t_0.975,2 = 4.3027.
    seeds = {0: {"a": np.ones(100)}, 1: {"a": np.zeros(100)}, 2: {"a": np.ones(100)}}
    wide = success_ci(seeds, n_boot=4000)
    assert wide.mean == 2 / 3
    assert (wide.lo, wide.hi) == pytest.approx((2 / 3 - 4.302653 / 3, 2 / 3 + 4.302653 / 3))
    recs = [{"task": "a", "prompt": "own", "success": [1, 0]},
            {"task": "a", "prompt": "wrong", "success": [0, 0]},
            {"task": "b", "prompt": "own", "success": [True]}]
    got = outcomes_from_episodes(recs, 7, where={"prompt": "own"})
    assert list(got) == [7] and got[7]["a"].tolist() == [1, 0] and got[7]["b"].tolist() == [1]
