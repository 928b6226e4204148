"""Window sampler, returns, prompts and normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from mtdiff import keys
from mtdiff.data.normalize import Normalizer
from mtdiff.data.prompts import cut_prompt_windows, load_prompts, write_prompts
from mtdiff.data.reader import load_dataset
from mtdiff.data.schema import DatasetError
from mtdiff.data.windows import WindowSampler, normalized_returns, reward_to_go
from tests.conftest import make_episode


def _sampler(root, **kw):
    ds = load_dataset(root)
    args = dict(horizon=8, history=3, prompt_len=5, batch_per_task=64, seed=0)
    args.update(kw)
    return ds, WindowSampler(ds, load_prompts(root), Normalizer(ds.stats), **args)


def test_reward_to_go_matches_brute_force():
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    starts = np.array([0, 3])
    np.testing.assert_allclose(reward_to_go(r, starts, 1.0), [6, 5, 3, 9, 5])
    g = 0.9
    np.testing.assert_allclose(reward_to_go(r, starts, g),
                               [1 + g * 2 + g * g * 3, 2 + g * 3, 3, 4 + g * 5, 5], rtol=1e-6)


def test_batch_shapes_and_balance(write_dataset):
    root = write_dataset(tasks=("a", "b", "c"), episodes=5, T=20)
    ds, s = _sampler(root, batch_per_task=4)
    b = s.sample()
    assert b[keys.BATCH_ACTIONS].shape == (12, 8, 2)
    assert b[keys.BATCH_HISTORY].shape == (12, 3, 6)
    assert b[keys.BATCH_PROMPT].shape == (12, 5, 8)
    assert b[keys.BATCH_RETURN].shape == (12, 1)
    assert b[keys.BATCH_TRANSITIONS].shape == (12, 8, 9)
    assert b[keys.BATCH_MASK].shape == (12, 8)
    assert np.bincount(b[keys.BATCH_TASK_ID]).tolist() == [4, 4, 4]
    assert all(v.dtype == np.float32 for k, v in b.items() if k != keys.BATCH_TASK_ID)


def test_windows_match_data_and_pad_at_episode_edges(write_dataset):
    root = write_dataset(tasks=("a",), episodes=3, T=10)
    ds, s = _sampler(root, batch_per_task=2000)
    norm = Normalizer(ds.stats)
    task = ds.tasks["a"]
    obs = norm.normalize(keys.OBSERVATION, task.observations)
    act = norm.normalize(keys.ACTION, task.actions)
    b = s.sample()
    # Recover each window's start row from its first history state (unique random data).
    last_hist = b[keys.BATCH_HISTORY][:, -1]
    rows = np.array([int(np.flatnonzero((obs == h).all(1))[0]) for h in last_hist])
    assert set(rows) == set(range(30))  # every row can start a window
    for i, t in enumerate(rows):
        ep_start, ep_end = (t // 10) * 10, (t // 10) * 10 + 10
        n_in = min(8, ep_end - t)
        np.testing.assert_array_equal(b[keys.BATCH_MASK][i], [1] * n_in + [0] * (8 - n_in))
        np.testing.assert_allclose(b[keys.BATCH_ACTIONS][i, :n_in], act[t:t + n_in])
        assert not b[keys.BATCH_ACTIONS][i, n_in:].any()  # zero padding past the end
        hist = [max(t - k, ep_start) for k in (2, 1, 0)]  # repeats the first state
        np.testing.assert_allclose(b[keys.BATCH_HISTORY][i], obs[hist])
        np.testing.assert_allclose(b[keys.BATCH_TRANSITIONS][i, :n_in, :6], obs[t:t + n_in])


def test_prompts_come_from_the_right_task(write_dataset):
    root = write_dataset(tasks=("a", "b"))
    ds, s = _sampler(root, batch_per_task=50)
    norm = Normalizer(ds.stats)
    prompts = load_prompts(root)
    b = s.sample()
    for i, tid in enumerate(b[keys.BATCH_TASK_ID]):
        raw = prompts[ds.task_names[tid]]
        p = np.concatenate([norm.normalize(keys.OBSERVATION, raw[..., :6]),
                            norm.normalize(keys.ACTION, raw[..., 6:])], -1)
        assert any(np.allclose(b[keys.BATCH_PROMPT][i], w) for w in p)


def test_returns_task_max_in_unit_interval_and_steps_left(write_dataset):
    root = write_dataset(tasks=("a",), episodes=4, T=10)
    task = load_dataset(root).tasks["a"]
    r = normalized_returns(task, 1.0, "task-max")
    assert r.min() == pytest.approx(0.0) and r.max() == pytest.approx(1.0)
    sl = normalized_returns(task, 1.0, "steps-left")
    # The last step of an episode: reward-to-go / 1 step left == its reward.
    np.testing.assert_allclose(sl[9], task.rewards[9], rtol=1e-6)


def test_missing_prompts_for_a_task_is_an_error(write_dataset):
    root = write_dataset(tasks=("a", "b"))
    ds = load_dataset(root)
    prompts = load_prompts(root)
    del prompts["b"]
    with pytest.raises(DatasetError, match=r"no prompt set for tasks \['b'\]"):
        WindowSampler(ds, prompts, Normalizer(ds.stats), horizon=4, history=2, prompt_len=5,
                      batch_per_task=2)


def test_prompt_windows_round_trip_and_cut(tmp_path):
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, 30), make_episode(rng, 3)]
    w = cut_prompt_windows(eps, 5, 40, rng)
    assert w.shape == (40, 5, 8)
    # Every window is a contiguous cut (or the short demo padded with its last step).
    long_sa = np.concatenate([eps[0][keys.OBSERVATION], eps[0][keys.ACTION]], -1)
    for win in w:
        hits = [k for k in range(26) if np.allclose(long_sa[k:k + 5], win)]
        first_obs = eps[1][keys.OBSERVATION][0]
        short = np.allclose(win[3:], win[2]) and np.allclose(win[0, :6], first_obs)
        assert hits or short
    write_prompts(tmp_path, {"x": w}, 6, 2)
    write_prompts(tmp_path, {"y": w[:3]}, 6, 2)  # merges, keeps x
    back = load_prompts(tmp_path)
    np.testing.assert_array_equal(back["x"], w)
    assert back["y"].shape == (3, 5, 8)


@pytest.mark.parametrize("kind", ["gaussian", "minmax"])
def test_normalizer_round_trip(write_dataset, kind):
    ds = load_dataset(write_dataset())
    n = Normalizer(ds.stats, kind)
    x = ds.tasks["a"].observations
    z = n.normalize(keys.OBSERVATION, x)
    np.testing.assert_allclose(n.unnormalize(keys.OBSERVATION, z), x, atol=1e-5)
    if kind == "minmax":
        allx = np.concatenate([t.observations for t in ds.tasks.values()])
        zz = n.normalize(keys.OBSERVATION, allx)
        assert zz.min() >= -1 - 1e-5 and zz.max() <= 1 + 1e-5
    n2 = Normalizer.from_state_dict(n.state_dict())
    np.testing.assert_allclose(n2.normalize(keys.OBSERVATION, x), z)
