"""RAD and S4RL augmentations and the Table 4 metrics (dynamics error, L2 distance, plot)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtdiff.collect.scripted import rollout_scripted, scripted_policy
from mtdiff.config import OfflineConfig
from mtdiff.data.reader import TaskData
from mtdiff.data.transitions import Transitions, from_task, task_data_from_episodes
from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM, make_env
from mtdiff.offline.td3bc import TD3BC
from mtdiff.synth.augment import rad_augment, s4rl_augment, value_gradient
from mtdiff.synth.embedding import embedding_plot
from mtdiff.synth.quality import (
    MetaWorldSimulator,
    dynamics_error,
    episode_mocap_offsets,
    l2_distance_from_dataset,
    nearest_distance,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reach() -> tuple[TaskData, Transitions]:
    """3 noisy scripted reach-v3 episodes of 60 steps."""
    eps = list(rollout_scripted("reach-v3", num_episodes=3, noise_std=0.3, seed=1,
                                max_episode_steps=60))
    data = task_data_from_episodes("reach-v3", eps)
    return data, from_task(data)


@pytest.fixture(scope="module")
def agent(reach: tuple[TaskData, Transitions]) -> TD3BC:
    _, tr = reach
    a = TD3BC(OBS_DIM, ACT_DIM, OfflineConfig(hidden=64, batch_size=64), seed=0)
    a.fit_normalizer(tr.observations)
    a.train(tr, 200)
    return a


def test_rad_scales_s_and_next_s_by_one_factor_in_range(reach) -> None:
    _, tr = reach
    aug = rad_augment(tr, copies=2, seed=0)
    assert len(aug) == 2 * len(tr) and aug.observations.shape == (2 * len(tr), OBS_DIM)
    np.testing.assert_array_equal(aug.rows, np.tile(tr.rows, 2))
    np.testing.assert_array_equal(aug.actions, np.tile(tr.actions, (2, 1)))
    np.testing.assert_array_equal(aug.rewards, np.tile(tr.rewards, 2))
    big = np.abs(np.tile(tr.observations, (2, 1))) > 1e-3  # ratios are exact where |s| > 0
    z = aug.observations[big] / np.tile(tr.observations, (2, 1))[big]
    assert 0.8 - 1e-6 <= z.min() and z.max() <= 1.2 + 1e-6 and z.max() - z.min() > 0.3
    # Per sample: one z per row, shared by s and s'.
    z_row = aug.observations[:, 0] / np.tile(tr.observations, (2, 1))[:, 0]
    np.testing.assert_allclose(aug.observations, np.tile(tr.observations, (2, 1)) * z_row[:, None],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aug.next_observations,
                               np.tile(tr.next_observations, (2, 1)) * z_row[:, None],
                               rtol=1e-5, atol=1e-6)
    per_dim = rad_augment(tr, per_dimension=True, seed=0)
    ratio = per_dim.observations[:, :3] / tr.observations[:, :3]
    assert (ratio.std(1) > 1e-3).all()  # a different factor per dimension


def test_s4rl_step_is_within_eps_and_increases_q(reach, agent) -> None:
    _, tr = reach
    eps = 0.01
    varying = tr.observations.std(0) > 0
    _, q0 = value_gradient(agent, tr.observations)
    for step, norm in (("sign", np.inf), ("l2", 2)):
        aug = s4rl_augment(tr, agent, eps=eps, step=step)
        delta = aug.observations - tr.observations
        assert np.linalg.norm(delta, ord=norm, axis=1).max() <= eps * (1 + 1e-4)
        assert np.linalg.norm(delta, ord=norm, axis=1).min() > 0.5 * eps
        assert np.abs(delta[:, ~varying]).max() == 0  # constant dims (padding) untouched
        assert not np.array_equal(aug.next_observations, tr.next_observations)
        _, q1 = value_gradient(agent, aug.observations)
        assert (q1 > q0).mean() > 0.95  # an ascent step on Q(s, pi(s))
    kept = s4rl_augment(tr, agent, perturb_next=False, copies=2)
    assert len(kept) == 2 * len(tr)
    np.testing.assert_array_equal(kept.next_observations[:len(tr)], tr.next_observations)


@pytest.mark.filterwarnings("ignore:Constant")  # the scripted policy's own P-gain warning
def test_episode_mocap_offsets_match_the_simulator() -> None:
    env = make_env("push-v3", seed=5, max_episode_steps=40)
    policy = scripted_policy("push-v3")
    rng = np.random.default_rng(0)
    eps, true_offsets = [], []
    for _ in range(2):
        obs, _ = env.reset()
        ep: dict[str, list] = {"observation": [], "action": [], "reward": [], "terminated": [],
                               "truncated": [], "success": []}
        for _ in range(40):
            a = np.clip(policy.get_action(obs) + rng.normal(0, 0.5, 4), -1, 1).astype(np.float32)
            true_offsets.append(env.unwrapped.data.mocap_pos[0] - obs[:3])
            ep["observation"].append(obs)
            ep["action"].append(a)
            obs, r, term, trunc, info = env.step(a)
            for k, v in (("reward", r), ("terminated", term), ("truncated", trunc),
                         ("success", info["success"])):
                ep[k].append(v)
        eps.append({k: np.asarray(v) for k, v in ep.items()})
    data = task_data_from_episodes("push-v3", eps)
    np.testing.assert_allclose(episode_mocap_offsets("push-v3", data), np.array(true_offsets),
                               atol=1e-6)


def test_dynamics_error_near_zero_on_real_transitions_and_not_for_rad(reach) -> None:
    data, tr = reach
    offsets = episode_mocap_offsets("reach-v3", data)[tr.rows]
    real = dynamics_error("reach-v3", tr, mocap_offsets=offsets, max_samples=25)
    # The approximation's own error (measured ~1e-6 on reach-v3, module doc).
    assert real.mse < 1e-5 and real.unstable == 0 and real.residual.max() < 1e-5
    rad = rad_augment(tr, seed=0)
    err = dynamics_error("reach-v3", rad, mocap_offsets=offsets, max_samples=25)
    assert err.mse > 30 * real.mse
    assert err.per_sample.shape == (25,) and err.index.shape == (25,)
    # A quaternion and its negation are one orientation: no error for a sign flip.
    s = tr.next_observations[0].astype(np.float64)
    flipped = s.copy()
    flipped[7:11] *= -1
    np.testing.assert_array_equal(MetaWorldSimulator.align_quaternions(flipped, s), s)


def test_nearest_distance_is_exact_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(300, 43)).astype(np.float32)
    r = rng.normal(size=(500, 43)).astype(np.float32)
    q[:10] = r[:10]  # exact matches: distance 0
    brute = np.sqrt(((q[:, None].astype(np.float64) - r[None]) ** 2).sum(-1)).min(1)
    got = nearest_distance(q, r, query_chunk=64, ref_chunk=97)  # ragged chunks
    np.testing.assert_allclose(got, brute, atol=1e-5)
    assert np.all(got[:10] == 0)


def test_l2_distance_from_dataset(reach) -> None:
    _, tr = reach
    assert np.all(l2_distance_from_dataset(tr, tr) == 0)
    rad = l2_distance_from_dataset(rad_augment(tr, seed=0), tr)
    assert rad.shape == (len(tr),) and rad.mean() > 0.1


def test_embedding_plot_is_written(reach, tmp_path) -> None:
    _, tr = reach
    sets = {"original": tr.transition_matrix(), "RAD": rad_augment(tr).transition_matrix()}
    for method in ("pca", "tsne"):
        path = embedding_plot(sets, tmp_path / f"emb-{method}.png", method=method, max_points=60)
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
